"""Signing in: a small page of our own (no CDN, no script) that trades an API key for a signed, HTTP-only
session cookie, and signing out. The door (api/door.py) sends unauthenticated browsers here."""

from __future__ import annotations

import html

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from service.access import SESSION_COOKIE, door
from ui.i18n import Locale, locale_of, tr

PAGE = """<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · face-recognition-ood</title>
<style>body{{font-family:system-ui,sans-serif;max-width:22rem;margin:12vh auto;padding:0 1rem;color:#1f2937}}
label,input,button{{display:block;width:100%;box-sizing:border-box;font-size:1rem}}
input{{padding:.6rem;margin:.4rem 0 1rem;border:1px solid #9ca3af;border-radius:.4rem}}
button{{padding:.6rem;background:#c2410c;color:#fff;border:0;border-radius:.4rem;cursor:pointer}}
.error{{color:#b91c1c;margin-bottom:1rem}}</style></head>
<body><h1>{title}</h1>{error}
<form method="post" action="/login"><label for="key">{key_label}</label>
<input id="key" name="key" type="password" autocomplete="current-password" required autofocus>
<button id="signin" type="submit">{button}</button></form></body></html>"""


def login_page(locale: Locale, error: str = "") -> str:
    return PAGE.format(
        lang="zh-CN" if locale == "zh" else "en",
        title=html.escape(tr(locale, "signin_title")),
        key_label=html.escape(tr(locale, "signin_key")),
        button=html.escape(tr(locale, "signin_button")),
        error=f'<p class="error" role="alert">{html.escape(error)}</p>' if error else "",
    )


def _is_https(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "").lower() == "https"


def install_login(app: FastAPI) -> None:
    """``GET /login`` (the form), ``POST /login`` (key -> cookie -> the UI), ``GET /logout``. Install before the UI is mounted."""

    @app.get("/login", include_in_schema=False)
    def login_form(request: Request) -> HTMLResponse:
        if door().open:
            return RedirectResponse("/", status_code=303)
        return HTMLResponse(login_page(locale_of(request)))

    @app.post("/login", include_in_schema=False)
    def login(request: Request, key: str = Form("")) -> HTMLResponse:
        principal = door().principal_for_key(key.strip())
        if principal is None:
            locale = locale_of(request)
            return HTMLResponse(login_page(locale, tr(locale, "signin_wrong")), status_code=401)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            door().session_token(principal),
            max_age=int(door().settings.session_hours * 3600),
            httponly=True,
            secure=_is_https(request),
            samesite="strict",
            path="/",
        )
        return response

    @app.get("/logout", include_in_schema=False)
    def logout() -> RedirectResponse:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response
