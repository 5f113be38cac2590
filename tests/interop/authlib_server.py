"""A second, independent SMART authorization server and FHIR endpoint, built on Authlib (Flask),
nothing of ours: the Rust client library (smartlaunch-client) is tested against it so that it
depends on the standards, not on smartlaunch's quirks.

Authlib provides the OAuth 2.0 authorization code grant with PKCE (S256 required), refresh
tokens with rotation, OpenID Connect id_tokens (RS256, by kid) and RFC 9068 JWT access tokens.
This file adds what SMART adds: `.well-known/smart-configuration`, the launch context in the
token response (`patient`, `need_patient_banner`), and a tiny FHIR API (one Patient, 25 paged
Observations) that checks the JWT access token's signature, issuer, audience, expiry and
scope.  `/legacy/fhir` is the same server as an older one would announce itself: no
`.well-known/smart-configuration`, only the CapabilityStatement's `oauth-uris` extension.  The authorization step approves at once as user `u1` (no pages: a test double of the
user, not of the protocol).

Clients: `public-app` (token_endpoint_auth_method none) and `confidential-app`
(client_secret_basic, secret `authlib-secret`), redirect URI http://127.0.0.1:9/app/callback.

Usage: python authlib_server.py   → prints "authlib server on http://127.0.0.1:PORT" and serves.
"""

import os
import secrets
import sys
import time
import warnings

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask, jsonify, request
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from werkzeug.serving import make_server

# Authlib 1.9 warns of its own API changes on every request; the test reads stdout only.
warnings.simplefilter("ignore")
# Plain http on loopback (a test server); Authlib refuses http otherwise.
os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")
REDIRECT_URI = "http://127.0.0.1:9/app/callback"
KEY = RSAKey.generate_key(2048, parameters={"kid": "authlib-key-1", "alg": "RS256", "use": "sig"}, private=True)
SCOPES = {"openid", "fhirUser", "launch/patient", "patient/*.rs", "patient/Patient.rs",
          "patient/Observation.rs", "offline_access"}

app = Flask(__name__)
BASE = ""  # set once the port is known
CODES, TOKENS = {}, {}


def fhir_base():
    return BASE + "/fhir"


class Client:
    def __init__(self, client_id, secret, method):
        self.client_id, self.secret, self.method = client_id, secret, method

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return REDIRECT_URI

    def get_allowed_scope(self, scope):
        return " ".join(s for s in (scope or "").split() if s in SCOPES)

    def check_redirect_uri(self, redirect_uri):
        return redirect_uri == REDIRECT_URI

    def check_client_secret(self, client_secret):
        return self.secret is not None and secrets.compare_digest(self.secret, client_secret)

    def check_endpoint_auth_method(self, method, endpoint):
        return method == self.method

    def check_response_type(self, response_type):
        return response_type == "code"

    def check_grant_type(self, grant_type):
        return grant_type in ("authorization_code", "refresh_token")


CLIENTS = {
    "public-app": Client("public-app", None, "none"),
    "confidential-app": Client("confidential-app", "authlib-secret", "client_secret_basic"),
}


class User:
    id = "u1"

    def get_user_id(self):
        return self.id


USER = User()


class Code:
    def __init__(self, **kw):
        self.__dict__.update(kw)

    def get_redirect_uri(self):
        return self.redirect_uri

    def get_scope(self):
        return self.scope

    def get_nonce(self):
        return self.nonce

    def get_auth_time(self):
        return self.auth_time

    def get_acr(self):
        return None

    def get_amr(self):
        return None

    def is_expired(self):
        return time.time() > self.auth_time + 60


class Token:
    def __init__(self, token, client_id):
        self.data, self.client_id, self.revoked = token, client_id, False

    def check_client(self, client):
        return client.get_client_id() == self.client_id

    def get_scope(self):
        return self.data.get("scope", "")

    def get_expires_in(self):
        return self.data.get("expires_in", 0)

    def is_expired(self):
        return False

    def is_revoked(self):
        return self.revoked


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["none", "client_secret_basic"]

    def save_authorization_code(self, code, req):
        data = req.payload.data
        CODES[code] = Code(code=code, client_id=req.client.client_id, redirect_uri=req.payload.redirect_uri,
                           scope=req.scope, nonce=data.get("nonce"), auth_time=int(time.time()),
                           code_challenge=data.get("code_challenge"),
                           code_challenge_method=data.get("code_challenge_method"))

    def query_authorization_code(self, code, client):
        item = CODES.get(code)
        if item and item.client_id == client.client_id and not item.is_expired():
            return item
        return None

    def delete_authorization_code(self, authorization_code):
        CODES.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code):
        return USER

    def create_token_response(self):
        status, body, headers = super().create_token_response()
        # SMART's launch context (the standalone launch picked patient p1).
        if "launch/patient" in body.get("scope", "").split():
            body["patient"] = "p1"
        body["need_patient_banner"] = True
        return status, body, headers


class RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["none", "client_secret_basic"]
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation

    def authenticate_refresh_token(self, refresh_token):
        token = TOKENS.get(refresh_token)
        if token and not token.revoked:
            return token
        return None

    def authenticate_user(self, refresh_token):
        return USER

    def revoke_old_credential(self, refresh_token):
        refresh_token.revoked = True


class SmartOpenIDCode(OpenIDCode):
    def resolve_client_private_key(self, client):
        return KeySet([KEY])

    def get_client_claims(self, client):
        return {"iss": BASE, "aud": [client.get_client_id()]}

    def get_client_algorithm(self, client):
        return "RS256"

    def get_encode_header(self, client):
        return {"alg": "RS256", "kid": KEY.kid}

    def exists_nonce(self, nonce, req):
        return any(c.nonce == nonce for c in CODES.values())

    def generate_user_info(self, user, scope):
        return UserInfo(sub=user.id, fhirUser=fhir_base() + "/Patient/p1")


class SmartJWTTokens(JWTBearerTokenGenerator):
    def get_jwks(self):
        return KeySet([KEY])

    def get_audiences(self, client, user, scope):
        return fhir_base()


def save_token(token, req):
    if "refresh_token" in token:
        TOKENS[token["refresh_token"]] = Token(token, req.client.client_id)


server = AuthorizationServer(app, query_client=CLIENTS.get, save_token=save_token)
server.register_grant(AuthorizationCodeGrant, [CodeChallenge(required=True), SmartOpenIDCode(require_nonce=False)])
server.register_grant(RefreshTokenGrant)


@app.get("/fhir/.well-known/smart-configuration")
def smart_configuration():
    return jsonify({
        "issuer": BASE,
        "jwks_uri": BASE + "/jwks",
        "authorization_endpoint": BASE + "/authorize",
        "token_endpoint": BASE + "/token",
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "scopes_supported": sorted(SCOPES),
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "capabilities": ["launch-standalone", "client-public", "client-confidential-symmetric",
                         "sso-openid-connect", "context-standalone-patient", "permission-offline",
                         "permission-patient", "permission-v2"],
    })


@app.get("/jwks")
def jwks():
    return jsonify(KeySet([KEY]).as_dict(private=False))


@app.get("/authorize")
def authorize():
    return server.create_authorization_response(grant_user=USER)


@app.post("/token")
def token():
    return server.create_token_response()


def bearer_claims():
    """The verified claims of the request's JWT access token, or None."""
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer "):
        return None
    try:
        claims = jwt.decode(auth[7:], KEY).claims
    except Exception:
        return None
    if claims.get("iss") != BASE or claims.get("aud") != fhir_base() or claims.get("exp", 0) < time.time():
        return None
    return claims


def outcome(status, code, text):
    return jsonify({"resourceType": "OperationOutcome",
                    "issue": [{"severity": "error", "code": code, "diagnostics": text}]}), status


def allowed(claims, resource_type):
    scopes = claims.get("scope", "").split()
    return "patient/*.rs" in scopes or f"patient/{resource_type}.rs" in scopes


@app.get("/legacy/fhir/metadata")
def legacy_metadata():
    """An older server's discovery: no .well-known, the oauth-uris extension of SMART 1.0."""
    uris = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
    return jsonify({"resourceType": "CapabilityStatement", "status": "active", "kind": "instance",
                    "fhirVersion": "4.0.1", "format": ["json"],
                    "rest": [{"mode": "server", "security": {"extension": [{"url": uris, "extension": [
                        {"url": "authorize", "valueUri": BASE + "/authorize"},
                        {"url": "token", "valueUri": BASE + "/token"}]}]}}]})


@app.get("/fhir/Patient/<pid>")
@app.get("/legacy/fhir/Patient/<pid>")
def read_patient(pid):
    claims = bearer_claims()
    if claims is None:
        return outcome(401, "login", "no valid access token")
    if not allowed(claims, "Patient") or pid != "p1":
        return outcome(403, "forbidden", "outside the granted scopes or patient")
    return jsonify({"resourceType": "Patient", "id": "p1", "name": [{"given": ["Ada"], "family": "Lovelace"}]})


@app.get("/fhir/Observation")
def search_observations():
    claims = bearer_claims()
    if claims is None:
        return outcome(401, "login", "no valid access token")
    if not allowed(claims, "Observation") or request.args.get("patient") != "p1":
        return outcome(403, "forbidden", "outside the granted scopes or patient")
    count = min(int(request.args.get("_count", "10")), 100)
    page = int(request.args.get("_page", "0"))
    everything = [{"resourceType": "Observation", "id": f"o{i}", "status": "final",
                   "subject": {"reference": "Patient/p1"},
                   "valueQuantity": {"value": 60 + i, "unit": "beats/minute"}} for i in range(25)]
    chunk = everything[page * count:(page + 1) * count]
    links = [{"relation": "self", "url": request.url}]
    if (page + 1) * count < len(everything):
        links.append({"relation": "next",
                      "url": f"{fhir_base()}/Observation?patient=p1&_count={count}&_page={page + 1}"})
    return jsonify({"resourceType": "Bundle", "type": "searchset", "total": len(everything), "link": links,
                    "entry": [{"resource": r, "search": {"mode": "match"}} for r in chunk]})


def main():
    global BASE
    http = make_server("127.0.0.1", 0, app, threaded=True)
    BASE = f"http://127.0.0.1:{http.server_port}"
    # RFC 9068 JWT access tokens, signed by the server's key, for the FHIR base, one hour.
    server.register_token_generator("default", SmartJWTTokens(
        issuer=BASE, expires_generator=lambda *_: 3600,
        refresh_token_generator=lambda **_: secrets.token_urlsafe(32)))
    print(f"authlib server on {BASE}", flush=True)
    http.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
