"""``make audit``: known vulnerabilities in the installed dependencies (pip-audit), never failing on the network.

    python -m closeloop.devtools.depaudit [--strict] [-- pip-audit options]

Runs ``pip-audit --skip-editable --format json`` on this environment and reads its answer:

- vulnerabilities found: they are listed and the exit code is 1;
- the advisory source could not be reached (no network, DNS, proxy, TLS, a timeout), or it answered for
  none of the packages (a mirror without the JSON API: every dependency "not found"): a warning says
  that nothing was audited and the exit code is 0, so CI is never blocked by the network (``--strict``
  makes it 2 instead);
- pip-audit not installed: a warning, exit 0 (2 with ``--strict``);
- otherwise: how many packages were audited, exit 0.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

NETWORK_SIGNS = ("ConnectionError", "NameResolutionError", "Max retries exceeded", "Temporary failure in name"
                 " resolution", "Name or service not known", "Failed to establish a new connection", "timed out",
                 "ReadTimeout", "ConnectTimeout", "SSLError", "ProxyError", "Network is unreachable",
                 "Connection refused", "HTTPSConnectionPool", "HTTPConnectionPool")


@dataclass
class Verdict:
    status: str  # vulnerable, clean, unreachable, unavailable, error
    audited: int = 0
    skipped: int = 0
    vulnerabilities: list[dict[str, str]] = field(default_factory=list)
    message: str = ""

    def exit_code(self, strict: bool = False) -> int:
        if self.status == "vulnerable":
            return 1
        if self.status in ("unreachable", "unavailable"):
            return 2 if strict else 0
        if self.status == "error":
            return 2 if strict else 0
        return 0


def classify(returncode: int, stdout: str, stderr: str) -> Verdict:
    """What one pip-audit run (``--format json``) found."""
    doc = None
    text = stdout.strip()
    if text:
        try:
            doc = json.loads(text[text.index("{"):] if "{" in text else text)
        except ValueError:
            doc = None
    if doc is None or not isinstance(doc, dict):
        if any(sign in stderr for sign in NETWORK_SIGNS):
            last = [ln for ln in stderr.strip().splitlines() if ln.strip()][-1:] or [""]
            return Verdict("unreachable", message=f"the advisory source could not be reached: {last[0][:300]}")
        return Verdict("error", message=f"pip-audit exited {returncode} without a report: {stderr.strip()[-300:]}")
    deps = doc.get("dependencies") or []
    skipped = [d for d in deps if d.get("skip_reason")]
    audited = [d for d in deps if not d.get("skip_reason")]
    vulns = [{"package": d.get("name", "?"), "version": d.get("version", "?"), "id": v.get("id", "?"),
              "fix_versions": ", ".join(v.get("fix_versions") or []) or "none"}
             for d in audited for v in d.get("vulns") or []]
    if vulns:
        return Verdict("vulnerable", len(audited), len(skipped), vulns,
                       f"{len(vulns)} known vulnerabilities in {len({v['package'] for v in vulns})} packages")
    if deps and not audited:
        reason = skipped[0].get("skip_reason", "") if skipped else ""
        return Verdict("unreachable", 0, len(skipped), message="the advisory source answered for none of the"
                       f" {len(skipped)} packages (e.g. {reason[:160]!r}): nothing was audited")
    return Verdict("clean", len(audited), len(skipped), message=f"no known vulnerabilities in {len(audited)} packages"
                   + (f" ({len(skipped)} could not be audited)" if skipped else ""))


def pip_audit_command() -> list[str] | None:
    local = Path(sys.executable).with_name("pip-audit")
    if local.exists():
        return [str(local)]
    found = shutil.which("pip-audit")
    return [found] if found else None


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    strict = "--strict" in args
    extra = args[args.index("--") + 1:] if "--" in args else []
    command = pip_audit_command()
    if command is None:
        print("audit: pip-audit is not installed (pip install -e '.[dev]'); nothing was audited", file=sys.stderr)
        return 2 if strict else 0
    try:
        proc = subprocess.run([*command, "--skip-editable", "--format", "json", "--progress-spinner", "off", *extra],
                              capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        print("audit: pip-audit timed out (the advisory source is slow or unreachable); nothing was audited",
              file=sys.stderr)
        return 2 if strict else 0
    verdict = classify(proc.returncode, proc.stdout, proc.stderr)
    if verdict.status == "vulnerable":
        print(f"audit: {verdict.message}")
        for v in verdict.vulnerabilities:
            print(f"  {v['package']} {v['version']}: {v['id']} (fixed in {v['fix_versions']})")
    elif verdict.status in ("unreachable", "error", "unavailable"):
        print(f"audit: WARNING {verdict.message}", file=sys.stderr)
    else:
        print(f"audit: {verdict.message}")
    return verdict.exit_code(strict)


if __name__ == "__main__":
    raise SystemExit(main())
