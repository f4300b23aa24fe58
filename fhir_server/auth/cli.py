"""``infirmary clients …`` and ``infirmary users …``: manage the authorization server's clients and users.

They work on the auth store of the data directory directly (a running server sees the changes at once), so the
first administrator and the first clients can be made before anyone can sign in.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from fhir_server.auth.clients import ClientSpecError, build_client, build_user
from fhir_server.auth.models import AUTH_METHODS, GRANT_TYPES, ROLES
from fhir_server.auth.service import open_store
from fhir_server.auth.store import AuthStore
from fhir_server.settings import Settings

_DATA_DIR = click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                         help="where the store lives [default: ./data]")


@contextmanager
def _store(data_dir: Path | None) -> Iterator[tuple[Settings, AuthStore]]:
    settings = Settings() if data_dir is None else Settings(data_dir=data_dir)
    store = open_store(settings)
    try:
        yield settings, store
    finally:
        store.close()


def _fail(exc: ClientSpecError | ValueError) -> click.ClickException:
    if isinstance(exc, ClientSpecError):
        return click.ClickException(f"{exc.element}: {exc.description}")
    return click.ClickException(str(exc))


@click.group(help="Register, list and remove OAuth clients (SMART apps, Backend Services systems).")
def clients() -> None:
    pass


@clients.command("add", help="Register a client; prints its id (and its secret, once).")
@click.option("--name", required=True, help="shown on the consent page")
@click.option("--client-id", default=None, help="default: a random id")
@click.option("--auth", "auth_method", type=click.Choice(AUTH_METHODS), default="none", show_default=True,
              help="token endpoint authentication")
@click.option("--scope", required=True, help='scopes it may be granted, e.g. "launch/patient openid fhirUser '
                                              'patient/*.rs" or "system/Observation.cruds"')
@click.option("--redirect-uri", "redirect_uris", multiple=True, help="exact redirect URI (repeatable)")
@click.option("--grant-type", "grant_types", multiple=True, type=click.Choice(GRANT_TYPES),
              help="repeatable; default authorization_code (+ refresh_token), or client_credentials with "
                   "private_key_jwt")
@click.option("--jwks-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="the client's public JWKS (private_key_jwt)")
@click.option("--jwks-uri", default=None, help="URL of the client's public JWKS (private_key_jwt)")
@_DATA_DIR
def clients_add(name: str, client_id: str | None, auth_method: str, scope: str, redirect_uris: tuple[str, ...],
                grant_types: tuple[str, ...], jwks_file: Path | None, jwks_uri: str | None,
                data_dir: Path | None) -> None:
    if not grant_types:
        grant_types = ("client_credentials",) if not redirect_uris else ("authorization_code", "refresh_token")
    jwks: Any = json.loads(jwks_file.read_text()) if jwks_file else None
    with _store(data_dir) as (settings, store):
        try:
            client, secret = build_client(
                client_id=client_id, name=name, auth_method=auth_method, scope=scope, redirect_uris=redirect_uris,
                grant_types=grant_types, jwks=jwks, jwks_uri=jwks_uri,
                allow_http_jwks_uri=settings.auth.allow_http_jwks_uri,
            )
            store.add_client(client)
        except (ClientSpecError, ValueError) as exc:
            raise _fail(exc) from exc
    click.echo(f"client_id: {client.client_id}")
    if secret:
        click.echo(f"client_secret: {secret}   (shown once; only its hash is kept)")


@clients.command("list", help="List the registered clients.")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@_DATA_DIR
def clients_list(as_json: bool, data_dir: Path | None) -> None:
    with _store(data_dir) as (_, store):
        found = store.list_clients()
    if as_json:
        click.echo(json.dumps([c.public() for c in found], indent=2))
        return
    for c in found:
        click.echo(f"{c.client_id}\t{c.name}\t{c.auth_method}\t{','.join(c.grant_types)}\t{c.scope}")


@clients.command("remove", help="Remove a client and revoke everything issued to it.")
@click.argument("client_id")
@_DATA_DIR
def clients_remove(client_id: str, data_dir: Path | None) -> None:
    with _store(data_dir) as (_, store):
        if not store.remove_client(client_id):
            raise click.ClickException(f"no client {client_id!r}")
    click.echo(f"removed {client_id}")


@click.group(help="Create, list, unlock and remove users (patients and staff).")
def users() -> None:
    pass


@users.command("add", help="Create a user; the password is asked for unless given.")
@click.argument("username")
@click.option("--kind", type=click.Choice(["patient", "staff"]), required=True)
@click.option("--name", "display_name", default="", help="display name")
@click.option("--role", "roles", multiple=True, type=click.Choice(ROLES), help="staff role (repeatable)")
@click.option("--patient", default=None, help="Patient id (patient users)")
@click.option("--practitioner", default=None, help="Practitioner id (staff)")
@click.option("--practitioner-role", default=None, help="PractitionerRole id (staff)")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@_DATA_DIR
def users_add(username: str, kind: str, display_name: str, roles: tuple[str, ...], patient: str | None,
              practitioner: str | None, practitioner_role: str | None, password: str,
              data_dir: Path | None) -> None:
    with _store(data_dir) as (_, store):
        try:
            user = build_user(username=username, password=password, kind=kind, display_name=display_name,
                              roles=roles, patient=patient, practitioner=practitioner,
                              practitioner_role=practitioner_role)
            store.add_user(user)
        except (ClientSpecError, ValueError) as exc:
            raise _fail(exc) from exc
    click.echo(f"user {user.username} ({user.id}) created")


@users.command("list", help="List users.")
@_DATA_DIR
def users_list(data_dir: Path | None) -> None:
    with _store(data_dir) as (_, store):
        for u in store.list_users():
            who = u.fhir_user or ""
            click.echo(f"{u.username}\t{u.kind}\t{','.join(u.roles)}\t{who}\t{'locked' if u.public()['locked'] else ''}")


@users.command("unlock", help="Unlock a user locked out by failed logins.")
@click.argument("username")
@_DATA_DIR
def users_unlock(username: str, data_dir: Path | None) -> None:
    with _store(data_dir) as (_, store):
        user = store.get_user_by_username(username)
        if user is None:
            raise click.ClickException(f"no user {username!r}")
        store.set_login_state(user.id, 0, 0.0)
    click.echo(f"unlocked {username}")


@users.command("remove", help="Remove a user and end their sessions.")
@click.argument("username")
@_DATA_DIR
def users_remove(username: str, data_dir: Path | None) -> None:
    with _store(data_dir) as (_, store):
        user = store.get_user_by_username(username)
        if user is None or not store.remove_user(user.id):
            raise click.ClickException(f"no user {username!r}")
    click.echo(f"removed {username}")
