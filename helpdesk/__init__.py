"""The Flask application factory: extensions, blueprints, CLI — nothing else.

Migrations are a deploy step (`flask --app wsgi db upgrade`), never run here: the
portal's workers and the gateway would race each other on startup.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask

from config import INSTANCE_DIR, Config
from helpdesk import instance


def create_app(config_class: type[Config] = Config, **overrides: Any) -> Flask:
    app = Flask(__name__, instance_path=str(Path(INSTANCE_DIR).resolve()))
    app.config.from_object(config_class())
    app.config.update(overrides)
    instance.prepare(app.instance_path, app.config)

    from helpdesk import (
        api,
        auth,
        cli,
        database,
        form_data,
        http_errors,
        languages,
        limit_storage,
        metrics,
        numbering,
        portal,
        request_size,
        security,
        sla,
        tracker,
    )
    from helpdesk.extensions import csrf, db, limiter, migrate

    database.init_app(app)
    numbering.init_app(app)
    sla.init_app(app)
    migrate.init_app(
        app,
        db,
        directory=str(Path(__file__).resolve().parent.parent / "migrations"),
        render_as_batch=True,
        compare_type=True,
        include_object=database.include_in_autogenerate,
    )
    languages.init_app(app)
    security.init_app(app)
    request_size.init_app(app)
    csrf.init_app(app)
    limit_storage.init_app(app)
    limiter.init_app(app)
    auth.init_app(app)
    http_errors.init_app(app)
    api.init_app(app)
    portal.init_app(app)
    tracker.init_app(app)
    metrics.init_app(app)
    form_data.init_app(app)  # after the blueprints: it reads the query string after their hooks
    cli.init_app(app)
    return app
