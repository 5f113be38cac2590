"""Interoperability: a Python backend-services client built on PyJWT + cryptography + requests
(not on anything of ours) against the real smartlaunch binary.

It registers itself over RFC 7591 with a public JWK Set, discovers the token endpoint, gets
client_credentials tokens with private_key_jwt (ES384 and RS384), and runs a complete FHIR
Bulk Data $export: kick-off, polling that honours Retry-After, the manifest, every NDJSON file
downloaded and counted; then a second export cancelled with DELETE.

Usage: python backend_services.py [path/to/smartlaunch]   (exit status 0 = interoperates)
"""

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm


def start_server(binary, data_dir):
    proc = subprocess.Popen(
        [binary, "serve", "--listen", "127.0.0.1:0", "--data", data_dir],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    for line in proc.stdout:
        if line.startswith("smartlaunch is running on "):
            base = line.split()[4]
            break
    else:
        raise SystemExit("the server did not start")
    # Keep draining stdout so the server never blocks on a full pipe.
    import threading

    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    return proc, base


def public_jwk(private_key, alg, kid):
    if alg.startswith("ES"):
        jwk = json.loads(ECAlgorithm.to_jwk(private_key.public_key()))
    else:
        jwk = json.loads(RSAAlgorithm.to_jwk(private_key.public_key()))
    jwk.update({"kid": kid, "alg": alg, "use": "sig"})
    return jwk


class BackendService:
    def __init__(self, fhir_base, alg):
        self.fhir = fhir_base
        self.alg = alg
        self.kid = str(uuid.uuid4())
        if alg == "ES384":
            self.key = ec.generate_private_key(ec.SECP384R1())
        else:
            self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        config = requests.get(f"{fhir_base}/.well-known/smart-configuration", timeout=10).json()
        assert "client-confidential-asymmetric" in config["capabilities"], config["capabilities"]
        assert "private_key_jwt" in config["token_endpoint_auth_methods_supported"]
        assert alg in config["token_endpoint_auth_signing_alg_values_supported"]
        assert "client_credentials" in config["grant_types_supported"]
        self.token_url = config["token_endpoint"]
        r = requests.post(
            config["registration_endpoint"],
            json={
                "client_name": f"Python backend ({alg})",
                "grant_types": ["client_credentials"],
                "token_endpoint_auth_method": "private_key_jwt",
                "jwks": {"keys": [public_jwk(self.key, alg, self.kid)]},
                "scope": "system/*.rs",
            },
            timeout=10,
        )
        assert r.status_code == 201, r.text
        self.client_id = r.json()["client_id"]
        self.cached = None

    def token(self, scope):
        """A token from the cache, or a new one with a fresh assertion."""
        if self.cached and self.cached[1] > time.time() + 30:
            return self.cached[0]
        now = int(time.time())
        assertion = jwt.encode(
            {
                "iss": self.client_id,
                "sub": self.client_id,
                "aud": self.token_url,
                "exp": now + 300,
                "iat": now,
                "jti": str(uuid.uuid4()),
            },
            self.key,
            algorithm=self.alg,
            headers={"kid": self.kid, "typ": "JWT"},
        )
        r = requests.post(
            self.token_url,
            data={
                "grant_type": "client_credentials",
                "scope": scope,
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion,
            },
            timeout=10,
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["token_type"].lower() == "bearer" and "refresh_token" not in body, body
        assert body["expires_in"] <= 300, body
        # The same assertion again is a replay.
        again = requests.post(
            self.token_url,
            data={
                "grant_type": "client_credentials",
                "scope": scope,
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion,
            },
            timeout=10,
        )
        assert again.status_code == 401 and again.json()["error"] == "invalid_client", again.text
        self.cached = (body["access_token"], time.time() + body["expires_in"])
        return body["access_token"]

    def headers(self, scope):
        return {"Authorization": f"Bearer {self.token(scope)}"}


def kick_off(svc, scope, url):
    r = requests.get(
        url,
        headers={**svc.headers(scope), "Accept": "application/fhir+json", "Prefer": "respond-async"},
        timeout=10,
    )
    assert r.status_code == 202, f"{r.status_code} {r.text}"
    return r.headers["Content-Location"]


def wait_for_manifest(svc, scope, status_url, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = requests.get(status_url, headers=svc.headers(scope), timeout=10)
        if r.status_code == 200:
            return r.json()
        assert r.status_code == 202, f"{r.status_code} {r.text}"
        retry = float(r.headers.get("Retry-After", "1"))
        time.sleep(min(max(retry, 0.1), 2.0))
    raise AssertionError("the export did not finish")


def export(svc):
    scope = "system/*.rs"
    status_url = kick_off(svc, scope, f"{svc.fhir}/$export?_type=Patient,Observation,Condition")
    manifest = wait_for_manifest(svc, scope, status_url)
    assert manifest["requiresAccessToken"] is True, manifest
    assert manifest["transactionTime"] and manifest["request"], manifest
    counts = {}
    for item in manifest["output"]:
        r = requests.get(item["url"], headers={**svc.headers(scope), "Accept": "application/fhir+ndjson"}, stream=True, timeout=30)
        assert r.status_code == 200, f"{r.status_code} {item['url']}"
        lines = 0
        for line in r.iter_lines():
            if line:
                resource = json.loads(line)
                assert resource["resourceType"] == item["type"], resource["resourceType"]
                lines += 1
        assert lines == item["count"], (item, lines)
        counts[item["type"]] = counts.get(item["type"], 0) + lines
        # Without the token, the file is not served.
        assert requests.get(item["url"], timeout=10).status_code == 401
    assert counts.get("Patient", 0) > 0 and counts.get("Observation", 0) > 0, counts
    # Cancel a second export.
    second = kick_off(svc, scope, f"{svc.fhir}/$export")
    r = requests.delete(second, headers=svc.headers(scope), timeout=10)
    assert r.status_code == 202, f"{r.status_code} {r.text}"
    assert requests.get(second, headers=svc.headers(scope), timeout=10).status_code == 404
    return counts


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/debug/smartlaunch"
    with tempfile.TemporaryDirectory() as data:
        proc, base = start_server(binary, os.path.join(data, "data"))
        try:
            fhir = f"{base}/fhir"
            for alg in ["ES384", "RS384"]:
                svc = BackendService(fhir, alg)
                counts = export(svc)
                print(f"python backend services ({alg}): token with private_key_jwt; $export {counts}")
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    print("interop: ok")


if __name__ == "__main__":
    main()
