"""A standard OAuth client library (authlib) against a running publisher.

Run by the publisher's integration tests (`oauth::authlib_client_revokes_and_introspects`)
with a publisher on loopback. It discovers the endpoints from the RFC 8414 metadata,
then revokes (RFC 7009) and introspects (RFC 7662) with both client authentication
methods, exactly as an application would, and prints one JSON line of what it saw.

usage: authlib_client.py BASE_URL CLIENT_ID CLIENT_SECRET BASIC_TOKEN POST_TOKEN OTHER_TOKEN
"""

import json
import os
import sys

# The test's publisher listens on plain-HTTP loopback; authlib insists on HTTPS
# otherwise.
os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"

import requests  # noqa: E402
from authlib.integrations.requests_client import OAuth2Session  # noqa: E402


def main():
    base, client_id, secret, basic_token, post_token, other_token = sys.argv[1:7]
    metadata = requests.get(base + "/.well-known/oauth-authorization-server", timeout=10)
    metadata.raise_for_status()
    metadata = metadata.json()
    seen = {"metadata": metadata}

    basic = OAuth2Session(
        client_id,
        secret,
        revocation_endpoint_auth_method="client_secret_basic",
    )
    post = OAuth2Session(
        client_id,
        secret,
        revocation_endpoint_auth_method="client_secret_post",
    )
    revoke = metadata["revocation_endpoint"]
    introspect = metadata["introspection_endpoint"]

    # Introspect before: active.
    before = basic.introspect_token(introspect, token=basic_token)
    seen["introspect_before"] = [before.status_code, before.json()]
    # Revoke with HTTP Basic, then with the credentials in the form.
    r = basic.revoke_token(revoke, token=basic_token, token_type_hint="access_token")
    seen["revoke_basic"] = [r.status_code, r.json(), r.headers.get("Cache-Control")]
    r = post.revoke_token(revoke, token=post_token, token_type_hint="access_token")
    seen["revoke_post"] = [r.status_code, r.json()]
    # A token issued to another client: refused.
    r = basic.revoke_token(revoke, token=other_token)
    seen["revoke_other"] = [r.status_code, r.json()]
    # Garbage is "revoked" with success (RFC 7009 section 2.2).
    r = basic.revoke_token(revoke, token="not-a-token")
    seen["revoke_garbage"] = [r.status_code, r.json()]
    # Introspect after: inactive, and nothing else said.
    after = post.introspect_token(introspect, token=basic_token)
    seen["introspect_after"] = [after.status_code, after.json()]
    # A wrong secret: 401 invalid_client.
    wrong = OAuth2Session(
        client_id, secret + "x", revocation_endpoint_auth_method="client_secret_basic"
    )
    r = wrong.revoke_token(revoke, token=post_token)
    seen["wrong_secret"] = [r.status_code, r.json(), r.headers.get("WWW-Authenticate")]
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
