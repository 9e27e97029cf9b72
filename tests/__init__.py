"""The test suite. No `.env` is read here or by the processes tests start
(config.ENV_FILE): a developer's settings must not change what a test sees."""

import os

os.environ["HELPDESK_ENV_FILE"] = ""
