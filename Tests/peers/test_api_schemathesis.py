"""schemathesis (an independent, property-based API tester) runs docs/openapi.yaml against a live server.

It fetches the document from the server itself (GET /openapi.yaml), generates valid and invalid
requests for every operation — examples, boundary values, random data, and stateful sequences following
the document's links (issue a key → revoke it, tap with it) — and checks every answer: no 5xx, status
codes, content types and bodies exactly as documented, invalid data rejected, valid data accepted.

`/v1/events/stream` is left out: an SSE stream never ends, so a generated request would only time out
(test_api_e2e.py reads it). Bounded: few examples per operation, a fixed seed, one worker; no single
answer may take over 5 s. KEYWAY_SCHEMATHESIS_EXAMPLES / KEYWAY_SCHEMATHESIS_SEED explore further.
KEYWAY_MAX_RESPONSE_S raises the 5 s limit for slow builds only (`make tsan`: a thread-sanitized keyway
advances a month of simulated time, every IQ sync of it, several times slower).

Where "valid data should be accepted" cannot hold for a site-independent document — a well-formed id
the site does not have, `not_after` before `not_before`, a phone out of BLE reach — the operations that
check such things may answer 400/422 to schema-valid requests; the config below says which, and only those.
"""
import os
import subprocess
import textwrap

from conftest import ROOT

SCHEMATHESIS = ROOT / ".venv" / "bin" / "schemathesis"
MAX_EXAMPLES = int(os.environ.get("KEYWAY_SCHEMATHESIS_EXAMPLES", "5"))
SEED = os.environ.get("KEYWAY_SCHEMATHESIS_SEED", "20261123")
MAX_RESPONSE_S = os.environ.get("KEYWAY_MAX_RESPONSE_S", "5")

# Operations whose schema-valid requests may still be refused for reasons of the site's content or
# the hardware, with the statuses they use for it (see the module docstring).
SEMANTIC = {
    # unknown lock/group ids, not_after <= not_before, a holder key that is not a P-256 point
    "issueKey": ["400"],
    # not_after <= not_before
    "setLockCertificate": ["400"],
    # a phone beyond BLE reach (422 out_of_reach), a PIN at a lock without keypad (422 no_keypad)
    "tap": ["422"],
    "remoteOpen": ["422"],
    "moveIQ": ["422"],
    "setDoorSensor": ["422"],
    "pressExit": ["422"],
    # the directory: a group id the site lacks, valid_until <= valid_from, two spellings of one tag UID,
    # a schedule window that does not parse, a lock id the site lacks, an update that changes nothing
    "createUser": ["400"],
    "updateUser": ["400"],
    "setUserTags": ["400"],
    "createGroup": ["400"],
    "updateGroup": ["400"],
    # a booking: a user id the directory lacks, not_after <= not_before
    "createMembership": ["400"],
    # a lock id the site lacks
    "setLockdown": ["400"],
    # a battery level for a mains-powered reader (422 no_battery); fields all null (400: nothing to change)
    "updateLock": ["400", "422"],
    # IQ activation: a user id the directory lacks (400, field user)
    "activateIQ": ["400"],
    "deactivateIQ": ["400"],
}

CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "401", "403", "404", "409"]
{operations}
"""

OPERATION = """
[[operations]]
include-operation-id = "{op}"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", {extra}]
"""


def test_schemathesis_finds_no_mismatch(start_keyway, tmp_path):
    srv = start_keyway()
    config = tmp_path / "schemathesis.toml"
    ops = "".join(OPERATION.format(op=op, extra=", ".join(f'"{s}"' for s in extra)) for op, extra in SEMANTIC.items())
    config.write_text(CONFIG.format(operations=ops))
    args = [str(SCHEMATHESIS), "--config-file", str(config), "--no-color",
            "run", srv.url("/openapi.yaml"), "--url", srv.base,
            "--checks", "all",
            "--exclude-path", "/v1/events/stream",
            "--phases", "examples,coverage,fuzzing,stateful",
            "--max-examples", str(MAX_EXAMPLES), "--seed", SEED, "--workers", "1",
            # A control API that answers any single request in over 5 s stalls the tests that drive it.
            "--max-response-time", MAX_RESPONSE_S, "--request-timeout", "20", "--generation-database", "none",
            "--report", "junit", "--report-dir", str(tmp_path / "report")]
    r = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    out = r.stdout + r.stderr
    assert r.returncode == 0, textwrap.dedent(f"""
        schemathesis found mismatches between docs/openapi.yaml and the server (exit {r.returncode}).
        Reproduce: {' '.join(args)}
        {out[-25000:]}
        --- keyway serve ---
        {srv.output()}""")
    assert "No issues found" in out or " passed" in out, out[-3000:]
