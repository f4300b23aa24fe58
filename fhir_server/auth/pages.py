"""The authorization server's pages: login, patient picker, consent, errors.  Plain server-rendered HTML, every
value escaped, no scripts; each form that changes something carries a CSRF token."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from fhir_server.auth import scopes as sc

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;color:#1d2433}
h1{font-size:1.4rem}fieldset{border:1px solid #c8ccd4;border-radius:6px;margin:1rem 0}
label{display:block;margin:.4rem 0}input[type=text],input[type=password],input[type=search]{width:100%;
padding:.4rem;box-sizing:border-box}button{padding:.5rem 1.1rem;margin:.3rem .3rem 0 0}
.error{color:#a11;font-weight:600}.muted{color:#5b6475;font-size:.9rem}code{font-size:.85rem}
"""


def page(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
        f"<title>{escape(title)} · Infirmary</title><style>{_STYLE}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>"
    )


def _hidden(items: Sequence[tuple[str, str]]) -> str:
    return "".join(f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in items)


def login_page(*, action: str, next_url: str, csrf: str, username: str = "", error: str | None = None) -> str:
    message = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    return page("Sign in", (
        f"{message}<form method=\"post\" action=\"{escape(action)}\">"
        f"{_hidden([('csrf', csrf), ('next', next_url)])}"
        f"<label>Username <input type=\"text\" name=\"username\" value=\"{escape(username)}\" "
        "autocomplete=\"username\" required autofocus></label>"
        "<label>Password <input type=\"password\" name=\"password\" autocomplete=\"current-password\" "
        "required></label><button type=\"submit\">Sign in</button></form>"
    ))


@dataclass(frozen=True)
class PatientChoice:
    id: str
    name: str
    birth_date: str = ""


def picker_page(*, action: str, params: Sequence[tuple[str, str]], query: str,
                patients: Sequence[PatientChoice], client_name: str) -> str:
    rows = "".join(
        f'<label><input type="radio" name="infirmary_patient" value="{escape(p.id)}" required> '
        f'{escape(p.name)} <span class="muted">{escape(p.birth_date)} · {escape(p.id)}</span></label>'
        for p in patients
    ) or '<p class="muted">No patient matches.</p>'
    kept = [(k, v) for k, v in params if k not in ("infirmary_patient", "patient_query")]
    return page("Choose a patient", (
        f"<p><strong>{escape(client_name)}</strong> will open the record of the patient you choose.</p>"
        f"<form method=\"get\" action=\"{escape(action)}\">{_hidden(kept)}"
        f"<label>Search by name <input type=\"search\" name=\"patient_query\" value=\"{escape(query)}\"></label>"
        "<button type=\"submit\">Search</button></form>"
        f"<form method=\"get\" action=\"{escape(action)}\">{_hidden(kept)}<fieldset>{rows}</fieldset>"
        "<button type=\"submit\">Continue</button></form>"
    ))


def describe(scope: str) -> str:
    """A scope in words, for the consent page."""
    words = {
        sc.OPENID: "Confirm who you are", sc.FHIR_USER: "Know which person in the record you are",
        sc.PROFILE: "See your name", sc.LAUNCH: "Open in the context the record system chose",
        sc.LAUNCH_PATIENT: "Know which patient is in context", sc.LAUNCH_ENCOUNTER: "Know the current encounter",
        sc.OFFLINE_ACCESS: "Keep access when you are not signed in", sc.ONLINE_ACCESS: "Keep access while you are "
        "signed in", sc.ADMIN: "Administer this server (clients, users, keys)",
    }
    if scope in words:
        return words[scope]
    try:
        parsed = sc.parse_resource_scope(scope)
    except sc.ScopeError:
        return scope
    verbs = [v for letter, v in zip(sc.PERMISSIONS, ("create", "read", "update", "delete", "search"), strict=True)
             if letter in parsed.permissions]
    what = "all data" if parsed.resource_type == "*" else f"{parsed.resource_type} data"
    whose = {"patient": "of the patient in context", "user": "you can access", "system": ""}[parsed.context]
    limit = f" (only where {parsed.query_text})" if parsed.query_text else ""
    return f"{', '.join(verbs).capitalize()} {what} {whose}{limit}".strip()


def consent_page(*, action: str, params: Sequence[tuple[str, str]], csrf: str, client_name: str, user_name: str,
                 scopes: Sequence[str], patient: PatientChoice | None, change_patient: str | None) -> str:
    boxes = "".join(
        f'<label><input type="checkbox" name="grant_scope" value="{escape(s)}" checked> {escape(describe(s))} '
        f'<code class="muted">{escape(s)}</code></label>'
        for s in scopes
    )
    who = ""
    if patient is not None:
        who = f"<p>Patient: <strong>{escape(patient.name)}</strong> <span class=\"muted\">{escape(patient.id)}</span>"
        if change_patient:
            who += f' <a href="{escape(change_patient)}">change</a>'
        who += "</p>"
        params = [*params, ("infirmary_patient", patient.id)]
    return page("Allow access?", (
        f"<p>Signed in as <strong>{escape(user_name)}</strong>.</p>"
        f"<p><strong>{escape(client_name)}</strong> asks to:</p>{who}"
        f"<form method=\"post\" action=\"{escape(action)}\">{_hidden([*params, ('csrf', csrf)])}"
        f"<fieldset><legend>Untick what you do not want to allow</legend>{boxes}</fieldset>"
        "<button type=\"submit\" name=\"decision\" value=\"approve\">Allow</button>"
        "<button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></form>"
    ))


def logout_page(*, action: str, csrf: str) -> str:
    return page("Sign out", (
        f"<form method=\"post\" action=\"{escape(action)}\">{_hidden([('csrf', csrf)])}"
        "<button type=\"submit\">Sign out</button></form>"
    ))


def error_page(title: str, message: str) -> str:
    return page(title, f'<p class="error" role="alert">{escape(message)}</p>')


def message_page(title: str, message: str) -> str:
    return page(title, f"<p>{escape(message)}</p>")
