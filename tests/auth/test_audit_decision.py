"""The audit decision from the path alone (``audited_fast``) agrees with the full rules (``audited``) wherever it
answers, and answers for the common requests."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_server.auth._decide import audited_fast
from fhir_server.auth.audit import RequestInfo, audited
from fhir_server.auth.guard import AccessRecord, Touch

LINKED = frozenset({"Patient", "Observation", "Encounter", "AuditEvent", "Subscription"})
TYPES = ["Patient", "Observation", "Practitioner", "Organization", "AuditEvent", "Encounter", "Subscription"]
SEGMENTS = st.sampled_from([*TYPES, "p1", "o-2", "_search", "_history", "1", "$everything", "$export", "$job",
                            "$validate", "metadata", "", "x$y"])
PATHS = st.lists(SEGMENTS, min_size=0, max_size=5).map("/".join)
TOUCHES = st.builds(Touch, st.sampled_from(TYPES), st.sampled_from(["", "a", "b"]),
                    st.frozensets(st.sampled_from(["p1", "p2"]), max_size=2),
                    st.sampled_from(["C", "R", "U", "D", "E"]), st.booleans())
METHODS = st.sampled_from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
STATUSES = st.sampled_from([200, 201, 204, 304, 400, 401, 403, 404, 409, 412, 422, 500])


@settings(max_examples=800, deadline=None)
@given(PATHS, METHODS, STATUSES, st.lists(TOUCHES, max_size=3), st.sampled_from(["", "_count=1"]))
def test_the_fast_answer_is_the_full_rules_answer(path: str, method: str, status: int, touches: list[Touch],
                                                   query: str) -> None:
    record = AccessRecord(list(touches))
    fast = audited_fast(record, path, status, LINKED)
    if fast is not None:
        assert fast == audited(record, RequestInfo(method, path, query, status, "10.0.0.1"), LINKED)


def test_the_common_requests_are_answered_from_the_path() -> None:
    patient = AccessRecord([Touch("Patient", "p1", frozenset({"p1"}), "R")])
    assert audited_fast(AccessRecord(), "Practitioner/pr1", 200, LINKED) is False  # shared data: no event
    assert audited_fast(AccessRecord(), "Practitioner", 200, LINKED) is False
    assert audited_fast(AccessRecord(), "Practitioner/pr1", 403, LINKED) is True  # a refusal always is
    assert audited_fast(patient, "Patient/p1", 200, LINKED) is True
    assert audited_fast(AccessRecord(), "Observation", 200, LINKED) is True  # a search of patient data, even empty
    assert audited_fast(patient, "Practitioner/pr1/_history", 200, LINKED) is None  # the full rules decide
    assert audited_fast(AccessRecord(), "AuditEvent/a1", 200, LINKED) is None
    assert audited_fast(AccessRecord(), "Patient/p1/$everything", 200, LINKED) is None
    assert audited_fast(AccessRecord(), "", 200, LINKED) is None
