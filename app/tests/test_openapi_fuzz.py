"""Property-based fuzzing of the served OpenAPI document (schemathesis), on PostgreSQL.

test_openapi_conformance.py sends every operation the same crafted requests; here schemathesis
generates them from the document itself: valid ones and ones that break it (wrong types,
missing or unknown fields, out-of-range values, odd strings, other methods), for every
operation, as a user and as an admin. Any 5xx, or any answer the document does not declare
(status code, content type, body schema, headers), fails the test.

Deterministic (``derandomize``: the same requests on every run, no example database), and
bounded: ``MAX_EXAMPLES`` generated requests per operation and role, plus the fixed ones of
schemathesis' coverage phase, about two minutes in all on a 2-core machine. Time it with
``SOCIALSPHERE_TEST_DB=postgres .venv/bin/python -m pytest -q tests/test_openapi_fuzz.py``
(in app/, after ``make -C app venv``).
"""
from __future__ import annotations

import tempfile

import pytest
import schemathesis
from conftest import create_owned_resources, create_user, make_config, outbox_token
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import negative_data_rejection, positive_data_acceptance

from socialsphere import create_app
from socialsphere.security import issue_access_token
from socialsphere.settings import REGISTRY

MAX_EXAMPLES = 100
# Every schemathesis check but these two heuristics. positive_data_acceptance wants a 2xx for
# any request the schemas allow, but the app refuses such requests by rules a JSON schema
# cannot state, each with a documented status (a date in the past, a too simple password, an
# unknown one-time token: 422 or 400; an exhausted quota: 402). negative_data_rejection wants a
# 4xx for each request it made invalid, but this test makes many of them valid again (the hooks
# below put existing ids and credentials in place of invalid values, and every request carries
# the Authorization header), and the document says unknown query parameters are ignored.
EXCLUDED_CHECKS = [positive_data_acceptance, negative_data_rejection]
# Values that exist in the running test's database (fixture ``known``), by path parameter or
# body field name: the hooks below put them in half of the requests, since random ids, setting
# keys and credentials alone would nearly always be a 404 or 401 and never reach the views.
KNOWN: dict[str, list] = {}

# The document as the app serves it. It depends on the routes only (no database is touched);
# each test sends its requests to its own app (``app=`` below). Loaded at import rather than
# from a fixture: schemathesis.pytest.from_fixture fails on pytest 9.2 (it sets
# ``Node._nodeid``, which pytest 9.2 no longer has).
schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json",
                                        create_app(make_config("sqlite://", tempfile.gettempdir())))


def _with_known(values: dict | None):
    if not isinstance(values, dict) or not KNOWN.keys() & values.keys():
        return st.just(values)
    known = st.fixed_dictionaries({name: st.sampled_from(KNOWN[name]) if name in KNOWN else st.just(value)
                                   for name, value in values.items()})
    return st.one_of(st.just(values), known)


@schema.hook
def flatmap_path_parameters(context, path_parameters):
    return _with_known(path_parameters)


@schema.hook
def flatmap_body(context, body):
    return _with_known(body)


@pytest.fixture
def app(make_app):
    """Limits off: the fuzzer sends hundreds of sign-ups, resets and logins from one address,
    and with the limits on nearly all of them would be the (documented) 429
    (test_openapi_conformance.py checks those 429s against the document)."""
    return make_app(RATE_LIMIT_REGISTER="0", RATE_LIMIT_PASSWORD_RESET="0",
                    LOGIN_LIMIT_ACCOUNT="0", LOGIN_LIMIT_IP="0")


@pytest.fixture(params=["user", "admin"])
def fuzzer(request, db):
    """On the plan with the highest quotas, so that creations are not all a 402 after a few."""
    return create_user(db, email=f"fuzz-{request.param}@example.com", role=request.param, plan_code="business")


@pytest.fixture
def bearer(app, fuzzer):
    """A new access token for each request: the fuzzer logs its own sessions out."""
    def token() -> str:
        with app.app_context():
            return issue_access_token(fuzzer.id, fuzzer.role)[0]

    return token


@pytest.fixture
def known(db, client, fuzzer):
    other = create_user(db, email="other@example.com", verified=False)
    post, account, plan = create_owned_resources(db, fuzzer.id)
    # one success each for verify-email, password-reset/confirm and refresh (then used up)
    client.as_user(other.token).post("/api/v1/auth/resend-verification")
    client.post("/api/v1/auth/password-reset/request", json={"email": fuzzer.email})
    login = client.post("/api/v1/auth/login", json={"email": fuzzer.email, "password": fuzzer.password})
    # not the fuzzer's own id: an admin that demotes or suspends itself fuzzes nothing after that
    KNOWN.update(post_id=[post.id], account_id=[account.id], account_ids=[[account.id]],
                 plan_id=[plan.id], user_id=[other.id], key=sorted(REGISTRY),
                 email=[fuzzer.email, other.email], password=[fuzzer.password],
                 token=[outbox_token(db, "verify_email"), outbox_token(db, "password_reset")],
                 refresh_token=[login.get_json()["refresh_token"]])
    yield KNOWN
    KNOWN.clear()


# function_scoped_fixture: one app and database per operation and role, on purpose; the
# operation's requests share them like the requests of one client.
@pytest.mark.postgres_only
@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_fuzz_openapi(case, app, bearer, known):
    case.call_and_validate(app=app, headers={"Authorization": f"Bearer {bearer()}"},
                           excluded_checks=EXCLUDED_CHECKS)
