"""The interactive part of the authorization code flow, framework-free: check a request for the user, then carry
out the user's decision.  Both are blocking (authlib and the store are synchronous): the routes call them in a
worker thread."""

from __future__ import annotations

import secrets
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc6749.errors import AccessDeniedError, InvalidRequestError, OAuth2Error

from fhir_server.auth import scopes as sc
from fhir_server.auth._request import Grantee, OAuthRequest
from fhir_server.auth.models import Client, LaunchContext, Session, User
from fhir_server.auth.server import Reply, SmartServer


class PageError(Exception):
    """A request that cannot be answered by redirecting to the client (unknown client, unregistered redirect URI):
    the user sees an error page instead."""


@dataclass(frozen=True)
class Ask:
    """A valid authorization request waiting for the user's decision."""

    grant: Any
    client: Client
    scopes: sc.ScopeSet  # what may be granted to this user
    launch: LaunchContext | None
    needs_patient: bool  # standalone launch with patient context: a staff user picks the patient


def check(server: SmartServer, request: OAuthRequest, user: User | None) -> Ask | Reply:
    """Validate an authorization request; an error the client should hear about comes back as a redirect."""
    try:
        grant = server.get_consent_grant(request, end_user=user)
    except OAuth2Error as error:
        if error.redirect_uri:
            error.state = request.payload.state
            reply: Reply = server.handle_error_response(request, error)
            return reply
        raise PageError(f"This authorization request cannot be processed: {error.description or error.error}.") \
            from error
    scopes = sc.ScopeSet.parse(request.scope or "", server.core.resource_types)
    if user is not None:
        scopes = for_user(scopes, user, request.launch)
    needs_patient = request.launch is None and (sc.LAUNCH_PATIENT in scopes or bool(scopes.in_context("patient")))
    return Ask(grant, request.client, scopes, request.launch, needs_patient)


def for_user(scopes: sc.ScopeSet, user: User, launch: LaunchContext | None) -> sc.ScopeSet:
    """The scopes this user may grant: administration only for administrators, and ``launch/encounter`` only when
    an EHR launch set an encounter (there is no encounter picker)."""
    drop = set()
    if not user.is_admin:
        drop.add(sc.ADMIN)
    if launch is None or launch.encounter is None:
        drop.add(sc.LAUNCH_ENCOUNTER)
    return sc.without(scopes, names=drop)


def _refuse(server: SmartServer, request: OAuthRequest, ask: Ask, error: OAuth2Error) -> Reply:
    error.redirect_uri = ask.grant.redirect_uri
    error.state = request.payload.state
    reply: Reply = server.handle_error_response(request, error)
    return reply


def decide(server: SmartServer, request: OAuthRequest, ask: Ask, user: User, session: Session, *, approve: bool,
           chosen: Collection[str], picked_patient: str | None) -> Reply:
    """Carry out the user's decision: a redirect to the client with a code, or with ``access_denied``."""
    granted = [s for s in ask.scopes.names() if s in chosen]
    if not approve or not granted:
        return _refuse(server, request, ask, AccessDeniedError("the user did not allow access"))
    patient = encounter = None
    banner = False
    launch = ask.launch
    if launch is not None:
        if launch.user_id is not None and launch.user_id != user.id:
            return _refuse(server, request, ask, InvalidRequestError("the launch context belongs to another user"))
        if user.kind == "patient" and launch.patient not in (None, user.patient_id):
            return _refuse(server, request, ask, AccessDeniedError("a patient can launch only their own record"))
        patient, encounter, banner = launch.patient, launch.encounter, launch.need_patient_banner
    elif ask.needs_patient:
        patient = user.patient_id if user.kind == "patient" else picked_patient
        if not patient:
            raise PageError("Choose a patient first.")
        banner = True
    grantee = Grantee(
        user=user, scope=" ".join(granted), grant_id=secrets.token_urlsafe(16), auth_time=session.auth_time,
        session_id=session.session_id, patient=patient, encounter=encounter, need_patient_banner=banner,
        launch_id=launch.launch_id if launch else None, fhir_base=request.endpoints.fhir_base,
    )
    reply: Reply = server.create_authorization_response(request, grant_user=grantee, grant=ask.grant)
    return reply
