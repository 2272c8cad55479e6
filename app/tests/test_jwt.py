"""JWT attacks: alg none, wrong key, expired, wrong audience/issuer, tampered, unknown kid."""
import base64
import json
import warnings
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from conftest import JWT_KEYS, error_of


def _claims(user_id, **over):
    now = datetime.now(UTC)
    claims = {"sub": str(user_id), "role": "user", "iss": "socialsphere", "aud": "socialsphere-api",
              "iat": now, "exp": now + timedelta(minutes=5), "typ": "access"}
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def _call(client, token):
    return client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})


def test_valid_token_accepted(client, user):
    token = jwt.encode(_claims(user.id), JWT_KEYS["k1"], algorithm="HS256", headers={"kid": "k1"})
    assert _call(client, token).status_code == 200


def test_old_kid_still_accepted_after_rotation(client, user):
    """Signing key rotation: tokens signed with a previous (still listed) key stay valid."""
    token = jwt.encode(_claims(user.id), JWT_KEYS["k0"], algorithm="HS256", headers={"kid": "k0"})
    assert _call(client, token).status_code == 200


def test_issued_token_has_kid(user):
    assert jwt.get_unverified_header(user.token)["kid"] == "k1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_alg_none_rejected(client, user):
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": "k1"}).encode())
    payload = _b64(json.dumps(_claims(user.id, iat=1, exp=4102444800)).encode())
    for token in (f"{header}.{payload}.", f"{header}.{payload}"):
        r = _call(client, token)
        assert r.status_code == 401
        assert error_of(r)["error"] == "invalid_token"


def test_wrong_key_rejected(client, user):
    token = jwt.encode(_claims(user.id), "another-secret-of-sufficient-length-xyz!", algorithm="HS256",
                       headers={"kid": "k1"})
    assert _call(client, token).status_code == 401


def test_unknown_kid_rejected(client, user):
    token = jwt.encode(_claims(user.id), JWT_KEYS["k1"], algorithm="HS256", headers={"kid": "k9"})
    assert _call(client, token).status_code == 401


def test_missing_kid_rejected(client, user):
    token = jwt.encode(_claims(user.id), JWT_KEYS["k1"], algorithm="HS256")
    assert _call(client, token).status_code == 401


def test_other_algorithm_rejected(client, user):
    with warnings.catch_warnings():  # short key for HS512: irrelevant, it must be refused anyway
        warnings.simplefilter("ignore")
        token = jwt.encode(_claims(user.id), JWT_KEYS["k1"], algorithm="HS512", headers={"kid": "k1"})
    assert _call(client, token).status_code == 401


def test_expired_rejected(client, user):
    past = datetime.now(UTC) - timedelta(hours=1)
    token = jwt.encode(_claims(user.id, iat=past, exp=past + timedelta(minutes=5)), JWT_KEYS["k1"],
                       algorithm="HS256", headers={"kid": "k1"})
    r = _call(client, token)
    assert r.status_code == 401
    assert error_of(r)["error"] == "token_expired"


@pytest.mark.parametrize("claim,value", [
    ("aud", "someone-else"), ("iss", "evil"), ("aud", None), ("iss", None), ("exp", None),
    ("iat", None), ("sub", None), ("typ", "refresh"), ("sub", "not-a-number"),
])
def test_bad_claims_rejected(client, user, claim, value):
    claims = _claims(user.id)
    if value is None:
        claims.pop(claim)
    else:
        claims[claim] = value
    token = jwt.encode(claims, JWT_KEYS["k1"], algorithm="HS256", headers={"kid": "k1"})
    assert _call(client, token).status_code == 401


def test_tampered_payload_rejected(client, user, db):
    from conftest import create_user

    other = create_user(db, email="mallory@example.com")
    header, payload, sig = other.token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data["sub"] = str(user.id)
    data["role"] = "admin"
    forged = f"{header}.{_b64(json.dumps(data).encode())}.{sig}"
    assert _call(client, forged).status_code == 401


@pytest.mark.parametrize("value", ["", "Bearer", "Bearer ", "Basic abc", "Bearer a.b", "Bearer x.y.z"])
def test_malformed_authorization(client, value):
    r = client.get("/api/v1/auth/me", headers={"Authorization": value})
    assert r.status_code == 401


def test_deleted_user_token_rejected(client, db, user):
    from socialsphere.models import User

    db.session.delete(db.session.get(User, user.id))
    db.session.commit()
    assert client.as_user(user.token).get("/api/v1/auth/me").status_code == 401


def test_role_claim_not_trusted(client, user):
    """Admin rights come from the database, not from the token's role claim."""
    token = jwt.encode(_claims(user.id, role="admin"), JWT_KEYS["k1"], algorithm="HS256",
                       headers={"kid": "k1"})
    assert client.get("/api/v1/admin/users", headers={"Authorization": f"Bearer {token}"}).status_code == 403


def test_401_bodies_name_no_library_reason(client, user):
    """Every rejected access token gets one of two bodies; no PyJWT text (issue 11, item 12)."""
    past = datetime.now(UTC) - timedelta(hours=1)
    invalid = [
        jwt.encode(_claims(user.id, aud="someone-else"), JWT_KEYS["k1"], algorithm="HS256", headers={"kid": "k1"}),
        jwt.encode(_claims(user.id, iss="evil"), JWT_KEYS["k1"], algorithm="HS256", headers={"kid": "k1"}),
        jwt.encode(_claims(user.id, exp=None), JWT_KEYS["k1"], algorithm="HS256", headers={"kid": "k1"}),
        jwt.encode(_claims(user.id), "another-secret-of-sufficient-length-xyz!", algorithm="HS256",
                   headers={"kid": "k1"}),
        jwt.encode(_claims(user.id), JWT_KEYS["k1"], algorithm="HS256", headers={"kid": "k9"}),
        jwt.encode(_claims(user.id, typ="refresh"), JWT_KEYS["k1"], algorithm="HS256", headers={"kid": "k1"}),
        jwt.encode(_claims(999999), JWT_KEYS["k1"], algorithm="HS256", headers={"kid": "k1"}),
        "x.y.z", "not-a-jwt",
    ]
    for token in invalid:
        r = _call(client, token)
        assert r.status_code == 401, token
        assert error_of(r) == {"error": "invalid_token", "message": "invalid token"}, token
    expired = jwt.encode(_claims(user.id, iat=past, exp=past + timedelta(minutes=5)), JWT_KEYS["k1"],
                         algorithm="HS256", headers={"kid": "k1"})
    assert error_of(_call(client, expired)) == {"error": "token_expired", "message": "token expired"}


@pytest.mark.parametrize("sub", [str(2**63), "9" * 40, "-" + "9" * 40])
def test_subject_out_of_range_is_invalid_token(client, user, sub):
    """A sub no database id can have: 401 like any invalid token (was OverflowError on SQLite)."""
    token = jwt.encode(_claims(user.id, sub=sub), JWT_KEYS["k1"], algorithm="HS256", headers={"kid": "k1"})
    r = _call(client, token)
    assert r.status_code == 401
    assert error_of(r) == {"error": "invalid_token", "message": "invalid token"}
