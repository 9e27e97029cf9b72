"""Seeded support mail for the benchmarks: today's short mail, a 4 KB plain mail and a realistic mix.

The SMTP and IMAP benchmarks used to send only a 150-byte body; real support mail
is longer, multilingual, mostly HTML as well as text, often quotes what came
before and sometimes carries a screenshot or an invoice. `generate(shape, count,
seed=...)` returns the same bytes for the same arguments (boundaries, dates,
Message-IDs and attachment bytes all come from the seed), so runs, and our gateway
and a peer fed the same mails, compare.

Shapes:

- `short`: today's benchmark mail (`tests.support.mail.message`): one 141-byte
  text/plain part, a new ticket from one of 50 senders, no Date, no HTML.
- `plain4k`: one text/plain part of 4,000-4,400 bytes (UTF-8) in the language mix
  below, quoted-printable, each a new ticket; the shape issue 19 first measured.
- `realistic`, each trait drawn independently per mail from the seed (over 1,000
  mails every share lands within a few points of its figure):
  - language of a new ticket: en 35 %, es 20 %, pt 15 %, de 15 %, fr 15 %
    (sentences, greetings, sign-offs, attribution lines and phone footers of that
    language); a reply is written in its ticket's language;
  - text/plain part of 1-8 KB (drawn log-uniform; with the replies' quotes the
    median is about 3.5 KB), in
    UTF-8 (90 %) or windows-1252 (10 %), quoted-printable (80 %) or base64 (20 %);
    a third hard-wrapped at 72 columns like Thunderbird, the rest one line a
    paragraph like Gmail and Outlook; 40 % end in a "-- " signature block;
  - an HTML alternative on 80 % (multipart/alternative): Gmail-style `<div>`s
    (60 %) or Outlook's Word HTML with its style sheet (40 %), the same text;
  - 25 % are replies (never in the first 20 mails) to a ticket an earlier mail of
    the sequence opened, at least 20 mails before: subject "Re: [TKT-000123] <the
    original subject>" always, and In-Reply-To/References to the original's
    Message-ID on half of them (the other half thread by the number only); the new
    text comes first, then the client's attribution line in the reply's language
    ("On ... wrote:", "El ... escribió:", "Am ... schrieb ...:", ...; wrapped over
    two lines by the Thunderbird-style third when it is long) and the original's
    text quoted whole with "> " (cut at a line where the part would pass 8 KB), in
    a `<blockquote>` in the HTML; 10 % of replies come from a colleague at the same
    domain rather than the requester, 10 % end the new text with a phone footer
    ("Sent from my iPhone");
  - 15 % carry one attachment of 20-500 KB (log-uniform), base64: a PNG-like
    screenshot (60 %) or a PDF-like invoice (40 %), bytes from the seed;
  - 20 % of new tickets copy a colleague (Cc);
  - every header a real client and two relays write: Return-Path, two Received,
    a DKIM-Signature, Date, Message-ID, MIME-Version, an X-Mailer or User-Agent
    where the client sends one, encoded words for non-ASCII names and subjects.

Every sender is at example.com (the benchmarks authorize `@example.com`, so every
mail becomes a ticket or a reply). Ticket numbers in reply subjects assume the
sequence's new tickets get `first_number`, `first_number + 1`, ... in order, as
they do in a fresh database fed the mails one after another.

Run from the project root to look at them:
  .venv/bin/python -m bench.realistic_mail --shape realistic --count 40 --out /tmp/mails
"""

from __future__ import annotations

import argparse
import base64
import html
import math
import random
import textwrap
import unicodedata
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime
from pathlib import Path

from config import Config
from helpdesk.numbering import format_number
from tests.support.mail import SUPPORT, message

SHAPES = ("short", "plain4k", "realistic")
SHORT_BODY = (
    "Hello support,\n\nthe printer on floor 3 is out of toner again and the spare "
    "cartridges are gone. Could someone order new ones?\n\nThanks,\nBench\n"
)
DOMAIN = "example.com"

# The realistic mix; the docstring above states the same figures.
LANGUAGE_WEIGHTS = {"en": 35, "es": 20, "pt": 15, "de": 15, "fr": 15}
REPLY_SHARE = 0.25
REPLY_MIN_GAP = 20  # a reply answers a ticket opened at least this many mails before it
THREADED_REPLY_SHARE = 0.5  # replies with In-Reply-To/References (the rest: number only)
COLLEAGUE_REPLY_SHARE = 0.10
PHONE_FOOTER_SHARE = 0.10  # of replies
HTML_SHARE = 0.80
OUTLOOK_SHARE = 0.40  # of the HTML alternatives; the rest are Gmail-style
ATTACHMENT_SHARE = 0.15
PNG_SHARE = 0.60  # of the attachments; the rest are PDFs
CC_SHARE = 0.20  # of new tickets
WRAPPED_SHARE = 1 / 3
SIGNATURE_SHARE = 0.40
BASE64_SHARE = 0.20
WINDOWS_1252_SHARE = 0.10
TEXT_BYTES = (1024, 8192)
LETTER_SLACK = 300  # bytes: a letter is filled to within this much of its size, a sentence at a time
ATTACHMENT_BYTES = (20 * 1024, 500 * 1024)
PLAIN4K_BYTES = (4000, 4400)
START = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Language:
    """What a customer writing in one language puts in a support mail."""

    code: str
    utc_offset: int  # hours, for the Date header
    names: tuple[str, ...]
    companies: tuple[str, ...]
    titles: tuple[str, ...]
    subjects: tuple[str, ...]
    greetings: tuple[str, ...]
    sentences: tuple[str, ...]
    reply_openers: tuple[str, ...]
    closings: tuple[str, ...]
    phone_footer: str
    days: tuple[str, ...]  # Monday first, as the language's mail clients abbreviate them
    months: tuple[str, ...]
    attribution: str  # str.format fields: day, d, month, year, time, name, address


LANGUAGES = {
    "en": Language(
        code="en",
        utc_offset=0,
        names=("Ann Smith", "James Miller", "Olivia Brown", "Harry Wilson", "Emily Taylor", "Oliver Jones"),
        companies=("Example Logistics Ltd", "Example Dental Practice", "Example Builders plc"),
        titles=("Office Manager", "IT Coordinator", "Accounts Assistant"),
        subjects=(
            "Cannot log in to the customer portal",
            "Invoice {invoice} charged twice",
            "Internet keeps dropping (error {code})",
            "Printer prints blank pages",
            "Where is order {order}?",
            "VPN disconnects after a few seconds",
            "Our IP {ip} is blacklisted",
            "Slow download speed since {date}",
        ),
        greetings=("Hello,", "Hi support team,", "Good morning,", "Dear Sir or Madam,"),
        sentences=(
            "Since this morning I cannot log in to the customer portal; it says my password has "
            "expired, but the reset link never arrives.",
            "The invoice {invoice} we received for last month charges us twice for the same 24 user "
            "licences.",
            "Our office internet connection drops every twenty minutes or so, and the router shows "
            "error {code} in its log.",
            "I already restarted the router and the modem twice, and I also tried a different cable, "
            "with no change.",
            "The printer on the second floor keeps printing blank pages after the latest driver update.",
            "Could you please check whether order {order} has been shipped? The tracking page has not "
            "changed since {date}.",
            "When I open the attachment from your last message, Adobe Reader reports that the file is "
            "damaged.",
            "Three of our colleagues have the same problem, so it does not seem to be related to one "
            "computer.",
            "The VPN client connects, but after a few seconds no internal page loads and the shared "
            "drives disappear.",
            "Our static IP address {ip} appears on a blacklist, and several customers reject our "
            "outgoing mail.",
            "I attached a screenshot of the error message so you can see exactly what appears on screen.",
            "We need this fixed before Friday because our accountant closes the quarter on that day.",
            "The download speed measured {speed} Mbit/s this morning, well below the 300 Mbit/s in our "
            "contract.",
            "Please let me know if you need remote access to the machine; I am available between 9:00 "
            "and 17:00.",
            "The mobile app shows an empty list of tickets, while the website shows all of them correctly.",
            "We changed our billing address in March, but the last two invoices still show the old one.",
            "After the technician's visit on {date}, the phone line has a loud hum on every call.",
            "I would also like to know whether we can move to the business plan without a new contract "
            "period.",
            "The error appears only when more than ten people are connected at the same time.",
            "Could you also add my colleague to the account so that she receives the invoices too?",
            "I called the hotline yesterday and was told that someone would contact me within 24 hours, "
            "but nobody did.",
            "Is there a known outage in our area? Our neighbours seem to have the same issue.",
            "The reference number shown on the error page was {code}.",
            "Thank you in advance for looking into this, it is affecting our whole team.",
        ),
        reply_openers=(
            "Thanks for your answer.",
            "Unfortunately the problem is back.",
            "I tried what you suggested, but it did not help.",
            "Here is the additional information you asked for.",
        ),
        closings=("Best regards,", "Thanks,", "Kind regards,"),
        phone_footer="Sent from my iPhone",
        days=("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
        months=("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
        attribution="On {day}, {d} {month} {year} at {time}, {name} <{address}> wrote:",
    ),
    "es": Language(
        code="es",
        utc_offset=1,
        names=("María García", "José Martínez", "Lucía Fernández", "Javier López", "Carmen Sánchez"),
        companies=("Ferretería Ejemplo S.L.", "Clínica Ejemplo", "Transportes Ejemplo S.A."),
        titles=("Administración", "Responsable de sistemas", "Recepción"),
        subjects=(
            "No puedo acceder al portal de clientes",
            "Factura {invoice} cobrada dos veces",
            "Internet se corta constantemente (error {code})",
            "La impresora imprime páginas en blanco",
            "¿Dónde está el pedido {order}?",
            "La VPN se desconecta a los pocos segundos",
            "Nuestra IP {ip} está en una lista negra",
            "Velocidad de descarga muy baja desde el {date}",
        ),
        greetings=("Hola,", "Buenos días,", "Estimado equipo de soporte:"),
        sentences=(
            "Desde esta mañana no puedo acceder al portal de clientes; dice que mi contraseña ha "
            "caducado, pero el enlace para restablecerla nunca llega.",
            "En la factura {invoice} del mes pasado nos cobran dos veces las mismas 24 licencias de usuario.",
            "La conexión a internet de la oficina se corta cada veinte minutos más o menos y el router "
            "muestra el error {code}.",
            "Ya reinicié el router y el módem dos veces y también probé con otro cable, sin ningún cambio.",
            "La impresora de la segunda planta imprime páginas en blanco desde la última actualización "
            "del controlador.",
            "¿Podrían comprobar si el pedido {order} ya ha sido enviado? La página de seguimiento no ha "
            "cambiado desde el {date}.",
            "Al abrir el archivo adjunto de su último mensaje, Adobe Reader indica que el archivo está "
            "dañado.",
            "Tres compañeros tienen el mismo problema, así que no parece estar relacionado con un solo "
            "ordenador.",
            "El cliente VPN se conecta, pero a los pocos segundos no carga ninguna página interna y "
            "desaparecen las unidades compartidas.",
            "Nuestra dirección IP fija {ip} aparece en una lista negra y varios clientes rechazan "
            "nuestro correo saliente.",
            "Adjunto una captura de pantalla del mensaje de error para que vean exactamente lo que aparece.",
            "Necesitamos que esto se solucione antes del viernes, porque nuestra gestoría cierra el "
            "trimestre ese día.",
            "La velocidad de descarga medida esta mañana fue de {speed} Mbit/s, muy por debajo de los "
            "300 Mbit/s contratados.",
            "Si necesitan acceso remoto al equipo, estoy disponible entre las 9:00 y las 17:00.",
            "La aplicación móvil muestra una lista de incidencias vacía, mientras que la web las "
            "muestra todas correctamente.",
            "Cambiamos la dirección de facturación en marzo, pero las dos últimas facturas siguen "
            "mostrando la antigua.",
            "Después de la visita del técnico el {date}, la línea telefónica tiene un zumbido fuerte "
            "en todas las llamadas.",
            "También me gustaría saber si podemos pasar al plan de empresa sin un nuevo periodo de "
            "permanencia.",
            "El error solo aparece cuando hay más de diez personas conectadas a la vez.",
            "¿Podrían añadir también a mi compañera a la cuenta para que reciba las facturas?",
            "Ayer llamé a la línea de atención y me dijeron que me contactarían en 24 horas, pero "
            "nadie lo hizo.",
            "¿Hay alguna avería conocida en nuestra zona? Los vecinos parecen tener el mismo problema.",
            "El número de referencia que aparece en la página de error es {code}.",
            "Muchas gracias de antemano por revisarlo, está afectando a todo el equipo.",
        ),
        reply_openers=(
            "Gracias por su respuesta.",
            "Lamentablemente el problema ha vuelto.",
            "Probé lo que me indicaron, pero no ha servido.",
            "Les envío la información adicional que me pidieron.",
        ),
        closings=("Saludos,", "Un saludo,", "Atentamente,"),
        phone_footer="Enviado desde mi iPhone",
        days=("lun", "mar", "mié", "jue", "vie", "sáb", "dom"),
        months=("ene", "feb", "mar", "abr", "may", "jun", "jul", "ago", "sept", "oct", "nov", "dic"),
        attribution="El {day}, {d} {month} {year} a las {time}, {name} (<{address}>) escribió:",
    ),
    "pt": Language(
        code="pt",
        utc_offset=-3,
        names=("João Silva", "Ana Souza", "Pedro Oliveira", "Beatriz Santos", "Luís Pereira"),
        companies=("Exemplo Comércio Ltda.", "Padaria Exemplo", "Exemplo Contabilidade"),
        titles=("Financeiro", "Suporte interno", "Gerente administrativo"),
        subjects=(
            "Não consigo acessar o portal do cliente",
            "Fatura {invoice} cobrada em dobro",
            "Internet caindo toda hora (erro {code})",
            "Impressora imprimindo páginas em branco",
            "Onde está o pedido {order}?",
            "VPN desconecta depois de alguns segundos",
            "Nosso IP {ip} está numa lista negra",
            "Velocidade de download baixa desde {date}",
        ),
        greetings=("Olá,", "Bom dia,", "Prezados,"),
        sentences=(
            "Desde hoje de manhã não consigo entrar no portal do cliente; aparece que a minha senha "
            "expirou, mas o link de redefinição nunca chega.",
            "A fatura {invoice} do mês passado cobra duas vezes as mesmas 24 licenças de usuário.",
            "A conexão de internet do escritório cai a cada vinte minutos, mais ou menos, e o roteador "
            "mostra o erro {code}.",
            "Já reiniciei o roteador e o modem duas vezes e também testei outro cabo, sem nenhuma mudança.",
            "A impressora do segundo andar está imprimindo páginas em branco desde a última atualização "
            "do driver.",
            "Vocês poderiam verificar se o pedido {order} já foi enviado? A página de rastreamento não "
            "muda desde {date}.",
            "Ao abrir o anexo da última mensagem de vocês, o Adobe Reader informa que o arquivo está "
            "danificado.",
            "Três colegas estão com o mesmo problema, então não parece ser algo de um único computador.",
            "O cliente VPN conecta, mas depois de alguns segundos nenhuma página interna carrega e as "
            "unidades compartilhadas somem.",
            "O nosso IP fixo {ip} aparece numa lista negra e vários clientes estão recusando os nossos "
            "e-mails.",
            "Segue em anexo uma captura de tela da mensagem de erro para que vejam exatamente o que aparece.",
            "Precisamos que isso seja resolvido antes de sexta-feira, porque o nosso contador fecha o "
            "trimestre nesse dia.",
            "A velocidade de download medida hoje de manhã foi de {speed} Mbit/s, bem abaixo dos 300 "
            "Mbit/s contratados.",
            "Se precisarem de acesso remoto à máquina, estou disponível entre 9h e 17h.",
            "O aplicativo mostra uma lista de chamados vazia, enquanto o site mostra todos corretamente.",
            "Mudamos o endereço de cobrança em março, mas as duas últimas faturas ainda mostram o antigo.",
            "Depois da visita do técnico em {date}, a linha telefônica tem um chiado forte em todas as "
            "ligações.",
            "Também gostaria de saber se podemos mudar para o plano empresarial sem um novo período de "
            "fidelidade.",
            "O erro só aparece quando mais de dez pessoas estão conectadas ao mesmo tempo.",
            "Vocês poderiam incluir a minha colega na conta para que ela também receba as faturas?",
            "Liguei ontem para a central e disseram que alguém entraria em contato em 24 horas, mas "
            "ninguém ligou.",
            "Há alguma falha conhecida na nossa região? Os vizinhos parecem ter o mesmo problema.",
            "O número de referência exibido na página de erro é {code}.",
            "Desde já agradeço a atenção, isso está afetando toda a equipe.",
        ),
        reply_openers=(
            "Obrigado pela resposta.",
            "Infelizmente o problema voltou.",
            "Fiz o que vocês sugeriram, mas não resolveu.",
            "Seguem as informações adicionais que vocês pediram.",
        ),
        closings=("Obrigado,", "Atenciosamente,", "Abraços,"),
        phone_footer="Enviado do meu iPhone",
        days=("seg.", "ter.", "qua.", "qui.", "sex.", "sáb.", "dom."),
        months=(
            "jan.",
            "fev.",
            "mar.",
            "abr.",
            "mai.",
            "jun.",
            "jul.",
            "ago.",
            "set.",
            "out.",
            "nov.",
            "dez.",
        ),
        attribution="Em {day}, {d} de {month} de {year} às {time}, {name} <{address}> escreveu:",
    ),
    "de": Language(
        code="de",
        utc_offset=1,
        names=("Jana Müller", "Lukas Schmidt", "Anna Schneider", "Jörg Weber", "Sophie Wagner"),
        companies=("Beispiel GmbH", "Praxis Dr. Beispiel", "Beispiel Logistik AG"),
        titles=("Büroleitung", "IT-Administration", "Buchhaltung"),
        subjects=(
            "Anmeldung im Kundenportal nicht möglich",
            "Rechnung {invoice} doppelt berechnet",
            "Internet bricht ständig ab (Fehler {code})",
            "Drucker druckt leere Seiten",
            "Wo bleibt Bestellung {order}?",
            "VPN trennt nach wenigen Sekunden",
            "Unsere IP {ip} steht auf einer Sperrliste",
            "Langsamer Download seit dem {date}",
        ),
        greetings=("Hallo,", "Guten Tag,", "Sehr geehrte Damen und Herren,"),
        sentences=(
            "Seit heute Morgen kann ich mich nicht mehr im Kundenportal anmelden; es heißt, mein "
            "Passwort sei abgelaufen, aber der Link zum Zurücksetzen kommt nie an.",
            "In der Rechnung {invoice} für den letzten Monat werden uns dieselben 24 Benutzerlizenzen "
            "doppelt berechnet.",
            "Die Internetverbindung im Büro bricht etwa alle zwanzig Minuten ab, und der Router zeigt "
            "den Fehler {code} an.",
            "Ich habe Router und Modem bereits zweimal neu gestartet und auch ein anderes Kabel "
            "ausprobiert, ohne Erfolg.",
            "Der Drucker im zweiten Stock druckt seit dem letzten Treiberupdate nur noch leere Seiten.",
            "Könnten Sie bitte prüfen, ob die Bestellung {order} schon verschickt wurde? Die "
            "Sendungsverfolgung hat sich seit dem {date} nicht geändert.",
            "Beim Öffnen des Anhangs Ihrer letzten Nachricht meldet der Adobe Reader, dass die Datei "
            "beschädigt ist.",
            "Drei Kolleginnen und Kollegen haben dasselbe Problem, es liegt also nicht an einem "
            "einzelnen Rechner.",
            "Der VPN-Client verbindet sich, aber nach ein paar Sekunden lädt keine interne Seite mehr "
            "und die Netzlaufwerke verschwinden.",
            "Unsere feste IP-Adresse {ip} steht auf einer Sperrliste, und mehrere Kunden weisen unsere "
            "ausgehenden E-Mails ab.",
            "Im Anhang finden Sie einen Screenshot der Fehlermeldung, damit Sie genau sehen, was "
            "angezeigt wird.",
            "Wir brauchen eine Lösung bis Freitag, weil unser Steuerberater an diesem Tag das Quartal "
            "abschließt.",
            "Die Download-Geschwindigkeit lag heute Morgen bei {speed} Mbit/s, weit unter den "
            "vertraglich zugesicherten 300 Mbit/s.",
            "Falls Sie einen Fernzugriff auf den Rechner brauchen, bin ich zwischen 9:00 und 17:00 Uhr "
            "erreichbar.",
            "Die App zeigt eine leere Liste von Tickets, während auf der Webseite alle korrekt "
            "angezeigt werden.",
            "Wir haben unsere Rechnungsadresse im März geändert, aber die letzten beiden Rechnungen "
            "zeigen noch die alte.",
            "Seit dem Technikerbesuch am {date} brummt die Telefonleitung bei jedem Gespräch laut.",
            "Außerdem möchte ich wissen, ob wir ohne neue Vertragslaufzeit in den Business-Tarif "
            "wechseln können.",
            "Der Fehler tritt nur auf, wenn mehr als zehn Personen gleichzeitig verbunden sind.",
            "Könnten Sie bitte auch meine Kollegin zum Konto hinzufügen, damit sie die Rechnungen "
            "ebenfalls erhält?",
            "Ich habe gestern bei der Hotline angerufen, und man sagte mir, dass sich innerhalb von 24 "
            "Stunden jemand meldet, aber niemand hat sich gemeldet.",
            "Gibt es eine bekannte Störung in unserer Gegend? Unsere Nachbarn scheinen dasselbe Problem "
            "zu haben.",
            "Die auf der Fehlerseite angezeigte Referenznummer lautet {code}.",
            "Vielen Dank im Voraus für Ihre Hilfe, das betrifft unser ganzes Team.",
        ),
        reply_openers=(
            "Vielen Dank für Ihre Antwort.",
            "Leider ist das Problem wieder da.",
            "Ich habe Ihren Vorschlag ausprobiert, aber es hat nicht geholfen.",
            "Hier die zusätzlichen Informationen, um die Sie gebeten hatten.",
        ),
        closings=("Viele Grüße", "Mit freundlichen Grüßen", "Beste Grüße"),
        phone_footer="Von meinem iPhone gesendet",
        days=("Mo.", "Di.", "Mi.", "Do.", "Fr.", "Sa.", "So."),
        months=(
            "Jan.",
            "Feb.",
            "März",
            "Apr.",
            "Mai",
            "Juni",
            "Juli",
            "Aug.",
            "Sept.",
            "Okt.",
            "Nov.",
            "Dez.",
        ),
        attribution="Am {day}, {d}. {month} {year} um {time} Uhr schrieb {name} <{address}>:",
    ),
    "fr": Language(
        code="fr",
        utc_offset=1,
        names=("Marie Dupont", "Lucas Martin", "Chloé Bernard", "Éric Petit", "Camille Durand"),
        companies=("Exemple SARL", "Cabinet Exemple", "Boulangerie Exemple"),
        titles=("Assistante de direction", "Responsable informatique", "Comptabilité"),
        subjects=(
            "Impossible de me connecter à l'espace client",
            "Facture {invoice} facturée deux fois",
            "Internet se coupe sans arrêt (erreur {code})",
            "L'imprimante sort des pages blanches",
            "Où en est la commande {order} ?",
            "Le VPN se déconnecte après quelques secondes",
            "Notre IP {ip} est sur liste noire",
            "Débit très faible depuis le {date}",
        ),
        greetings=("Bonjour,", "Madame, Monsieur,", "Bonjour l'équipe support,"),
        sentences=(
            "Depuis ce matin, je ne peux plus me connecter à l'espace client ; il indique que mon mot "
            "de passe a expiré, mais le lien de réinitialisation n'arrive jamais.",
            "La facture {invoice} du mois dernier nous facture deux fois les mêmes 24 licences utilisateur.",
            "La connexion internet du bureau se coupe toutes les vingt minutes environ, et le routeur "
            "affiche l'erreur {code}.",
            "J'ai déjà redémarré le routeur et le modem deux fois et essayé un autre câble, sans aucun "
            "changement.",
            "L'imprimante du deuxième étage n'imprime que des pages blanches depuis la dernière mise à "
            "jour du pilote.",
            "Pourriez-vous vérifier si la commande {order} a bien été expédiée ? La page de suivi n'a "
            "pas changé depuis le {date}.",
            "En ouvrant la pièce jointe de votre dernier message, Adobe Reader signale que le fichier "
            "est endommagé.",
            "Trois collègues ont le même problème, cela ne semble donc pas lié à un seul ordinateur.",
            "Le client VPN se connecte, mais après quelques secondes plus aucune page interne ne se "
            "charge et les lecteurs réseau disparaissent.",
            "Notre adresse IP fixe {ip} figure sur une liste noire, et plusieurs clients refusent nos "
            "courriels sortants.",
            "Vous trouverez ci-joint une capture d'écran du message d'erreur pour voir exactement ce qui "
            "s'affiche.",
            "Nous avons besoin d'une solution avant vendredi, car notre comptable clôture le trimestre "
            "ce jour-là.",
            "Le débit descendant mesuré ce matin était de {speed} Mbit/s, bien en dessous des 300 "
            "Mbit/s prévus au contrat.",
            "Si vous avez besoin d'un accès à distance à la machine, je suis disponible entre 9 h et 17 h.",
            "L'application mobile affiche une liste de tickets vide, alors que le site web les affiche "
            "tous correctement.",
            "Nous avons changé d'adresse de facturation en mars, mais les deux dernières factures "
            "indiquent toujours l'ancienne.",
            "Depuis le passage du technicien le {date}, la ligne téléphonique grésille fortement à "
            "chaque appel.",
            "J'aimerais aussi savoir si nous pouvons passer à l'offre entreprise sans nouvelle période "
            "d'engagement.",
            "L'erreur n'apparaît que lorsque plus de dix personnes sont connectées en même temps.",
            "Pourriez-vous également ajouter ma collègue au compte afin qu'elle reçoive aussi les factures ?",
            "J'ai appelé la hotline hier et on m'a dit que quelqu'un me recontacterait sous 24 heures, "
            "mais personne ne l'a fait.",
            "Y a-t-il une panne connue dans notre secteur ? Nos voisins semblent avoir le même problème.",
            "Le numéro de référence affiché sur la page d'erreur est {code}.",
            "Merci d'avance pour votre aide, cela touche toute notre équipe.",
        ),
        reply_openers=(
            "Merci pour votre réponse.",
            "Malheureusement, le problème est revenu.",
            "J'ai essayé ce que vous m'avez conseillé, mais cela n'a rien changé.",
            "Voici les informations complémentaires que vous m'avez demandées.",
        ),
        closings=("Cordialement,", "Bien à vous,", "Merci,"),
        phone_footer="Envoyé de mon iPhone",
        days=("lun.", "mar.", "mer.", "jeu.", "ven.", "sam.", "dim."),
        months=(
            "janv.",
            "févr.",
            "mars",
            "avr.",
            "mai",
            "juin",
            "juil.",
            "août",
            "sept.",
            "oct.",
            "nov.",
            "déc.",
        ),
        attribution="Le {day} {d} {month} {year} à {time}, {name} <{address}> a écrit :",
    ),
}

OUTLOOK_HEAD = (
    '<html xmlns:v="urn:schemas-microsoft-com:vml" xmlns:o="urn:schemas-microsoft-com:office:office" '
    'xmlns:w="urn:schemas-microsoft-com:office:word" '
    'xmlns:m="http://schemas.microsoft.com/office/2004/12/omml" xmlns="http://www.w3.org/TR/REC-html40">'
    '<head><meta http-equiv="Content-Type" content="text/html; charset={charset}">'
    '<meta name="Generator" content="Microsoft Word 15 (filtered medium)"><style><!--\n'
    "/* Font Definitions */\n"
    '@font-face\n\t{{font-family:"Cambria Math";\n\tpanose-1:2 4 5 3 5 4 6 3 2 4;}}\n'
    "@font-face\n\t{{font-family:Calibri;\n\tpanose-1:2 15 5 2 2 2 4 3 2 4;}}\n"
    "/* Style Definitions */\n"
    "p.MsoNormal, li.MsoNormal, div.MsoNormal\n\t{{margin:0cm;\n\tfont-size:11.0pt;\n"
    '\tfont-family:"Calibri",sans-serif;\n\tmso-ligatures:standardcontextual;\n\tmso-fareast-language:EN-US;}}\n'
    "a:link, span.MsoHyperlink\n\t{{mso-style-priority:99;\n\tcolor:#0563C1;\n"
    "\ttext-decoration:underline;}}\n"
    "span.EmailStyle17\n\t{{mso-style-type:personal-compose;\n\tfont-family:"
    '"Calibri",sans-serif;\n\tcolor:windowtext;}}\n'
    ".MsoChpDefault\n\t{{mso-style-type:export-only;\n\tfont-size:10.0pt;\n\tmso-fareast-language:EN-US;}}\n"
    "@page WordSection1\n\t{{size:612.0pt 792.0pt;\n\tmargin:70.85pt 70.85pt 2.0cm 70.85pt;}}\n"
    "div.WordSection1\n\t{{page:WordSection1;}}\n"
    '--></style><!--[if gte mso 9]><xml>\n<o:shapedefaults v:ext="edit" spidmax="1026" />\n'
    '</xml><![endif]--><!--[if gte mso 9]><xml>\n<o:shapelayout v:ext="edit">\n'
    '<o:idmap v:ext="edit" data="1" />\n</o:shapelayout></xml><![endif]--></head>'
    '<body lang="{lang}" link="#0563C1" vlink="#954F72" style="word-wrap:break-word">'
    '<div class="WordSection1">'
)
GMAIL_QUOTE = (
    '<div class="gmail_quote"><div dir="ltr" class="gmail_attr">{attribution}<br></div>'
    '<blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex;border-left:1px solid '
    'rgb(204,204,204);padding-left:1ex">{quoted}</blockquote></div>'
)
OUTLOOK_QUOTE = (
    '<p class="MsoNormal">{attribution}<o:p></o:p></p>'
    '<blockquote style="border:none;border-left:solid #CCCCCC 1.0pt;padding:0cm 0cm 0cm 6.0pt;'
    'margin-left:4.8pt;margin-top:5.0pt;margin-right:0cm;margin-bottom:5.0pt">{quoted}</blockquote>'
)


@dataclass(frozen=True)
class GeneratedMail:
    """One mail and what it was made to be, for the benchmarks' checks and the tests."""

    raw: bytes
    index: int
    sender: str  # the envelope sender, as the From address
    message_id: str  # with <>
    subject: str
    language: str
    text: str  # the text/plain part as written (before transfer encoding)
    html: bool
    attachment: str | None  # "png" or "pdf"
    attachment_bytes: int
    reply_to: int | None = None  # index of the mail whose ticket this answers
    ticket_number: int | None = None  # the number in the subject of a reply
    threaded: bool = False  # a reply carrying In-Reply-To/References

    @property
    def is_reply(self) -> bool:
        return self.reply_to is not None


@dataclass(frozen=True)
class _Original:
    """What a reply needs of the mail that opened the ticket."""

    index: int
    number: int
    language: str
    sender: str
    name: str
    message_id: str
    subject: str
    text: str
    sent: datetime


def generate(
    shape: str,
    count: int,
    *,
    seed: int = 1,
    first_number: int = 1,
    tag: str = "",
    prefix: str = Config.TICKET_PREFIX,
    width: int = Config.TICKET_NUMBER_WIDTH,
) -> list[GeneratedMail]:
    """`count` mails of `shape`; the same arguments give the same bytes.

    `tag` goes into every Message-ID, so one run can feed the same shape twice
    without the second set being duplicates of the first. Reply subjects name the
    ticket numbers a fresh database gives the sequence's new tickets from
    `first_number` on (`prefix` and `width` as the helpdesk formats them).
    """
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; one of {', '.join(SHAPES)}")
    if shape == "short":
        return [_short(i, tag) for i in range(count)]
    rng = random.Random(f"{shape}:{seed}")
    if shape == "plain4k":
        return [_plain4k(rng, i, tag) for i in range(count)]
    return _Realistic(rng, tag, first_number, prefix, width).mails(count)


def _short(index: int, tag: str) -> GeneratedMail:
    sender = f"user{index % 50}@{DOMAIN}"
    message_id = f"<{tag}short-{index}@client.example>"
    subject = f"Toner {index}"
    raw = message(sender=sender, subject=subject, body=SHORT_BODY, message_id=message_id).as_bytes(
        policy=SMTP_POLICY
    )
    return GeneratedMail(raw, index, sender, message_id, subject, "en", SHORT_BODY, False, None, 0)


def _plain4k(rng: random.Random, index: int, tag: str) -> GeneratedMail:
    language = LANGUAGES[_language(rng)]
    name, sender = _customer(rng, language)
    text = _letter(rng, language, name, PLAIN4K_BYTES[0], PLAIN4K_BYTES[1], signature=False)
    subject = _fill(rng, rng.choice(language.subjects))
    message_id = f"<{tag}plain4k-{index}.{rng.getrandbits(40):010x}@mail.{DOMAIN}>"
    msg = EmailMessage()
    msg["From"] = f"{name} <{sender}>"
    msg["To"] = SUPPORT
    msg["Subject"] = subject
    msg["Date"] = format_datetime(_sent(index, language))
    msg["Message-ID"] = message_id
    msg.set_content(text, charset="utf-8", cte="quoted-printable")
    return GeneratedMail(
        msg.as_bytes(policy=SMTP_POLICY),
        index,
        sender,
        message_id,
        subject,
        language.code,
        text,
        False,
        None,
        0,
    )


class _Realistic:
    """The realistic mix: remembers the tickets opened so far, so replies can answer them."""

    def __init__(self, rng: random.Random, tag: str, first_number: int, prefix: str, width: int) -> None:
        self.rng = rng
        self.tag = tag
        self.next_number = first_number
        self.prefix = prefix
        self.width = width
        self.opened: list[_Original] = []

    def mails(self, count: int) -> list[GeneratedMail]:
        return [self._mail(index) for index in range(count)]

    def _mail(self, index: int) -> GeneratedMail:
        rng = self.rng
        eligible = [o for o in self.opened[-200:] if o.index <= index - REPLY_MIN_GAP]
        original = rng.choice(eligible) if eligible and rng.random() < REPLY_SHARE else None
        # The requester, or a colleague, answers in the language of the ticket.
        language = LANGUAGES[_language(rng) if original is None else original.language]
        if original is None:
            name, sender = _customer(rng, language)
        elif rng.random() < COLLEAGUE_REPLY_SHARE:
            name, sender = _colleague(rng, language, original.sender)
        else:
            name, sender = original.name, original.sender
        sent = _sent(index, language)
        target = _log_uniform(rng, *TEXT_BYTES)
        outlook = rng.random() < OUTLOOK_SHARE
        with_html = rng.random() < HTML_SHARE
        wrapped = rng.random() < WRAPPED_SHARE
        signature = rng.random() < SIGNATURE_SHARE
        if original is None:
            low = min(target, TEXT_BYTES[1] - LETTER_SLACK)
            text = _letter(rng, language, name, low, low + LETTER_SLACK, signature=signature, wrapped=wrapped)
            subject = _fill(rng, rng.choice(language.subjects))
            body_html = _html_paragraphs(text, outlook)
        else:
            attribution = _attribution(language, original)
            if wrapped and len(attribution) > 72:
                head, _, verb = attribution.rpartition(" ")
                attribution = head + "\n" + verb
            quoted = _quote(original.text, TEXT_BYTES[1] - 2 * LETTER_SLACK - len(attribution.encode()))
            room = TEXT_BYTES[1] - len(quoted.encode()) - len(attribution.encode()) - 4
            low = min(max(LETTER_SLACK, target - (TEXT_BYTES[1] - room)), room - LETTER_SLACK)
            new_text = _letter(
                rng,
                language,
                name,
                low,
                low + LETTER_SLACK,
                signature=signature,
                wrapped=wrapped,
                opener=rng.choice(language.reply_openers),
                footer=language.phone_footer if rng.random() < PHONE_FOOTER_SHARE else None,
            )
            text = f"{new_text}\n{attribution}\n{quoted}\n"
            subject = f"Re: [{format_number(original.number, self.prefix, self.width)}] {original.subject}"
            body_html = _html_paragraphs(new_text, outlook) + (
                OUTLOOK_QUOTE if outlook else GMAIL_QUOTE
            ).format(
                attribution=html.escape(attribution.replace("\n", " ")),
                quoted=_html_paragraphs(_unquoted(quoted), outlook),
            )
        attachment = None
        attachment_data = b""
        if rng.random() < ATTACHMENT_SHARE:
            attachment = "png" if rng.random() < PNG_SHARE else "pdf"
            attachment_data = _attachment_bytes(rng, attachment, _log_uniform(rng, *ATTACHMENT_BYTES))
        threaded = original is not None and rng.random() < THREADED_REPLY_SHARE
        cc = _colleague(rng, language, sender) if original is None and rng.random() < CC_SHARE else None
        message_id = f"<{self.tag}r{index:06d}.{rng.getrandbits(64):016x}@mail.{DOMAIN}>"
        charset = "windows-1252" if language.code != "en" and rng.random() < WINDOWS_1252_SHARE else "utf-8"
        cte = "base64" if rng.random() < BASE64_SHARE else "quoted-printable"

        msg = EmailMessage()
        for header, value in _trace_headers(rng, sent, sender, outlook, wrapped):
            msg.set_raw(header, value)
        msg["From"] = f"{name} <{sender}>"
        msg["To"] = f"Support <{SUPPORT}>"
        if cc is not None:
            msg["Cc"] = f"{cc[0]} <{cc[1]}>"
        msg["Subject"] = subject
        msg["Date"] = format_datetime(sent)
        msg["Message-ID"] = message_id
        if threaded and original is not None:
            msg["In-Reply-To"] = original.message_id
            msg["References"] = original.message_id
        msg.set_content(text, charset=charset, cte=cte)
        if with_html:
            page = (
                OUTLOOK_HEAD.format(charset=charset, lang=language.code.upper())
                + body_html
                + "</div></body></html>"
                if outlook
                else f'<div dir="ltr">{body_html}</div>'
            )
            msg.add_alternative(page, subtype="html", charset=charset, cte=cte)
        if attachment is not None:
            filename = _attachment_name(rng, attachment, language, sent)
            maintype, subtype = ("image", "png") if attachment == "png" else ("application", "pdf")
            msg.add_attachment(attachment_data, maintype=maintype, subtype=subtype, filename=filename)
        for part in msg.walk():
            if part.is_multipart():
                part.set_boundary(f"{rng.getrandbits(112):028x}")
        raw = msg.as_bytes(policy=SMTP_POLICY)

        number = None
        if original is None:
            number = self.next_number
            self.next_number += 1
            self.opened.append(
                _Original(index, number, language.code, sender, name, message_id, subject, text, sent)
            )
        return GeneratedMail(
            raw,
            index,
            sender,
            message_id,
            subject,
            language.code,
            text,
            with_html,
            attachment,
            len(attachment_data),
            reply_to=original.index if original else None,
            ticket_number=original.number if original else None,
            threaded=threaded,
        )


def _unquoted(quoted: str) -> str:
    """The text under a reply's "> " quoting: what its HTML blockquote shows."""
    return "\n".join(line[2:] if line.startswith("> ") else line.lstrip(">") for line in quoted.split("\n"))


def _language(rng: random.Random) -> str:
    return rng.choices(list(LANGUAGE_WEIGHTS), weights=list(LANGUAGE_WEIGHTS.values()))[0]


def _customer(rng: random.Random, language: Language) -> tuple[str, str]:
    """A name and its example.com address (accents folded away in the address)."""
    name = rng.choice(language.names)
    local = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower().replace(" ", ".")
    return name, f"{local}{rng.randrange(8) or ''}@{DOMAIN}"


def _colleague(rng: random.Random, language: Language, of: str) -> tuple[str, str]:
    """Another customer at the same domain than `of`."""
    while True:
        name, address = _customer(rng, language)
        if address != of:
            return name, address


def _sent(index: int, language: Language) -> datetime:
    zone = timezone(timedelta(hours=language.utc_offset))
    return (START + timedelta(seconds=index * 53)).astimezone(zone)


def _log_uniform(rng: random.Random, low: int, high: int) -> int:
    return int(math.exp(rng.uniform(math.log(low), math.log(high))))


def _fill(rng: random.Random, template: str) -> str:
    """A sentence or subject with its numbers: invoices, orders, error codes, addresses."""
    if "{" not in template:
        return template
    return template.format(
        invoice=f"INV-{rng.randrange(2024, 2027)}-{rng.randrange(10**5):05d}",
        order=f"{rng.randrange(10**7, 10**8)}",
        code=rng.choice(("0x80070005", "E-1042", "PPP-651", "DNS_PROBE_FINISHED", "ERR-503")),
        ip=f"192.0.2.{rng.randrange(1, 255)}",
        date=f"{rng.randrange(1, 29):02d}/{rng.randrange(1, 13):02d}/2026",
        speed=rng.randrange(3, 60),
    )


def _letter(
    rng: random.Random,
    language: Language,
    name: str,
    low: int,
    high: int,
    *,
    signature: bool,
    wrapped: bool = False,
    opener: str | None = None,
    footer: str | None = None,
) -> str:
    """A customer's letter of `low`-`high` bytes (UTF-8): greeting, paragraphs of
    sentences, sign-off and name, and a "-- " signature block when asked."""
    head = [rng.choice(language.greetings), ""]
    tail = ["", rng.choice(language.closings), name.split()[0]]
    if signature:
        tail += [
            "",
            "-- ",
            name,
            rng.choice(language.titles),
            rng.choice(language.companies),
            f"Tel. +{rng.randrange(10, 99)} {rng.randrange(100, 999)} {rng.randrange(1000, 9999)}",
        ]
    if footer:
        tail += ["", footer]
    paragraphs: list[list[str]] = [[opener]] if opener else []
    fixed = len("\n".join([*head, "", *tail]).encode()) + 1

    def size() -> int:
        return fixed + sum(len(" ".join(p).encode()) + 2 for p in paragraphs) - 2 * bool(paragraphs)

    # LETTER_SLACK is more than the longest sentence, so adding one while the letter
    # is shorter than `low` never takes it past `high`.
    while size() < low:
        if not paragraphs or len(paragraphs[-1]) >= rng.randrange(2, 6):
            paragraphs.append([])
        paragraphs[-1].append(_fill(rng, rng.choice(language.sentences)))
    lines = [" ".join(p) for p in paragraphs]
    if wrapped:
        lines = ["\n".join(textwrap.wrap(line, 72, break_on_hyphens=False)) for line in lines]
    return "\n".join(head + ["\n\n".join(lines)] + tail) + "\n"


def _attribution(language: Language, original: _Original) -> str:
    when = original.sent.astimezone(timezone(timedelta(hours=language.utc_offset)))
    return language.attribution.format(
        day=language.days[when.weekday()],
        d=when.day,
        month=language.months[when.month - 1],
        year=when.year,
        time=when.strftime("%H:%M"),
        name=original.name,
        address=original.sender,
    )


def _quote(text: str, room: int) -> str:
    """`text` quoted with "> " (blank lines as ">"), as many whole lines as fit in `room` bytes."""
    quoted: list[str] = []
    used = 0
    for line in text.rstrip("\n").split("\n"):
        line = f"> {line}" if line else ">"
        used += len(line.encode()) + 1
        if used > room and quoted:
            break
        quoted.append(line)
    return "\n".join(quoted)


def _html_paragraphs(text: str, outlook: bool) -> str:
    """The text as a mail client's HTML: a block per paragraph, <br> per line."""
    blocks = []
    for paragraph in text.strip("\n").split("\n\n"):
        inner = "<br>".join(html.escape(line) for line in paragraph.split("\n"))
        if outlook:
            blocks.append(f'<p class="MsoNormal"><span lang="EN-US">{inner}<o:p></o:p></span></p>')
            blocks.append('<p class="MsoNormal"><span lang="EN-US"><o:p>&nbsp;</o:p></span></p>')
        else:
            blocks.append(f"<div>{inner}</div><div><br></div>")
    return "".join(blocks)


def _trace_headers(
    rng: random.Random, sent: datetime, sender: str, outlook: bool, wrapped: bool
) -> list[tuple[str, str]]:
    """Return-Path, the relays' Received lines, DKIM and the client's name, as real
    mail has them: folded by their writers, so they are set raw (the email package
    would fold a DKIM signature into encoded words)."""
    relay = f"mail-{rng.choice(('wr1', 'ej1', 'lf1', 'pl1'))}-f{rng.randrange(10, 99)}.{DOMAIN}"
    address = f"198.51.100.{rng.randrange(1, 255)}"
    stamp = format_datetime(sent)
    signature = base64.b64encode(rng.randbytes(256)).decode()
    body_hash = base64.b64encode(rng.randbytes(32)).decode()
    timestamp = int(sent.timestamp())
    headers = [
        ("Return-Path", f"<{sender}>"),
        _folded(
            "Received",
            f"from {relay} ({relay} [{address}]) by mx.helpdesk.test (Postfix) with ESMTPS id "
            f"4Z{rng.getrandbits(40):010X} for <{SUPPORT}>; {stamp}".split(" "),
        ),
        _folded(
            "Received",
            f"by {relay} with SMTP id {rng.getrandbits(64):016x} for <{SUPPORT}>; {stamp}".split(" "),
        ),
        _folded(
            "DKIM-Signature",
            [
                *f"v=1; a=rsa-sha256; c=relaxed/relaxed; d={DOMAIN}; s=20250601; "
                f"t={timestamp}; x={timestamp + 604800};".split(" "),
                "h=to:subject:message-id:date:from:mime-version:from:to:cc",
                ":subject:date:message-id:reply-to;",
                f"bh={body_hash};",
                *(("b=" + signature)[at : at + 70] for at in range(0, len(signature) + 2, 70)),
            ],
        ),
    ]
    if outlook:
        headers.append(("X-Mailer", "Microsoft Outlook 16.0"))
    elif wrapped:
        headers.append(("User-Agent", "Mozilla Thunderbird"))
    return headers


def _folded(name: str, words: list[str], width: int = 76) -> tuple[str, str]:
    """The header, its words joined by spaces and folded onto continuation lines of
    at most `width` characters (the first line counts the name)."""
    lines = [words[0]]
    for word in words[1:]:
        if len(lines[-1]) + 1 + len(word) + (len(name) + 2 if len(lines) == 1 else 0) > width:
            lines.append("\t" + word)
        else:
            lines[-1] += " " + word
    return name, "\n".join(lines)


def _attachment_name(rng: random.Random, kind: str, language: Language, sent: datetime) -> str:
    if kind == "pdf":
        word = {"en": "Invoice", "es": "Factura", "pt": "Fatura", "de": "Rechnung", "fr": "Facture"}
        return f"{word[language.code]}_{rng.randrange(10**5):05d}.pdf"
    shot = {
        "en": "Screenshot {date} at {time}.png",
        "es": "Captura de pantalla {date} {time}.png",
        "pt": "Captura de Tela {date} às {time}.png",
        "de": "Bildschirmfoto {date} um {time}.png",
        "fr": "Capture d’écran {date} à {time}.png",
    }
    return shot[language.code].format(date=sent.strftime("%Y-%m-%d"), time=sent.strftime("%H.%M.%S"))


def _attachment_bytes(rng: random.Random, kind: str, size: int) -> bytes:
    """`size` bytes that start and end as the file type does, with incompressible
    content (screenshots and scanned invoices are compressed already)."""
    if kind == "png":
        header = b"\x89PNG\r\n\x1a\n" + _png_chunk(
            b"IHDR", (1280).to_bytes(4, "big") + (800).to_bytes(4, "big") + b"\x08\x06\x00\x00\x00"
        )
        end = _png_chunk(b"IEND", b"")
        data = rng.randbytes(max(0, size - len(header) - len(end) - 12))
        return header + _png_chunk(b"IDAT", data) + end
    head = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Length 0 /Filter /FlateDecode >>\nstream\n"
    tail = b"\nendstream\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"
    return head + rng.randbytes(max(0, size - len(head) - len(tail))) + tail


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


def announced(shape: str, mails: list[GeneratedMail]) -> list[GeneratedMail]:
    """`mails`, once their shape's line (`describe`) is printed: for the benchmarks
    that make each shape's mails just before running them."""
    print(f"{shape}: {describe(mails)}", flush=True)
    return mails


def describe(mails: Sequence[GeneratedMail]) -> str:
    """One line on what a set of mails holds, printed beside the benchmarks' tables."""
    if not mails:
        return "no mails"
    count = len(mails)
    replies = sum(m.is_reply for m in mails)
    with_html = sum(m.html for m in mails)
    attached = [m for m in mails if m.attachment]
    text = sorted(len(m.text.encode()) for m in mails)
    languages = ", ".join(
        f"{code} {sum(m.language == code for m in mails) / count:.0%}"
        for code in LANGUAGE_WEIGHTS
        if any(m.language == code for m in mails)
    )
    return (
        f"{count} mails, {sum(len(m.raw) for m in mails) / count / 1024:.1f} KiB on average; "
        f"text part {text[0]}-{text[-1]} bytes (median {text[count // 2]}); {languages}; "
        f"HTML alternative {with_html / count:.0%}; replies {replies / count:.0%} "
        f"({sum(m.threaded for m in mails)} with In-Reply-To); attachments {len(attached) / count:.0%}"
        + (
            f" ({min(m.attachment_bytes for m in attached) // 1024}-"
            f"{max(m.attachment_bytes for m in attached) // 1024} KiB)"
            if attached
            else ""
        )
    )


def shape_names(text: str) -> list[str]:
    """An argparse type: `plain4k,realistic` → those shapes in that order; "" → none."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in SHAPES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown shape(s) {', '.join(unknown)}; known: {', '.join(SHAPES)}")
    return names


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.realistic_mail", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--shape", choices=SHAPES, default="realistic")
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write each mail to OUT/NNNNNN.eml")
    args = parser.parse_args(argv)
    mails = generate(args.shape, args.count, seed=args.seed)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        for mail in mails:
            (args.out / f"{mail.index:06d}.eml").write_bytes(mail.raw)
    print(describe(mails))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
