"""Collections configuration: ``config/collections.yaml`` and ``config/dunning.yaml``, validated on load
(every problem reported together)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from closeloop.collections.model import STEP_KINDS, DunningPolicy, DunningStep, MatchRules


def _load(name: str) -> dict[str, Any]:
    return yaml.safe_load((resources.files("closeloop") / "config" / name).read_text(encoding="utf-8")) or {}


@lru_cache(maxsize=1)
def settings() -> dict[str, Any]:
    doc = _load("collections.yaml")
    problems: list[str] = []
    try:
        doc["rules"] = MatchRules.from_dict({k: v for k, v in (doc.get("cash_application") or {}).items()
                                             if k != "learn_payer_accounts"})
    except (ValueError, TypeError, InvalidOperation) as exc:
        problems.append(f"cash_application: {exc}")
    approvals = doc.get("approvals") or {}
    for key in ("write_off_threshold", "refund_threshold"):
        try:
            if Decimal(str(approvals.get(key, "0"))) < 0:
                problems.append(f"approvals.{key} must not be negative")
        except InvalidOperation:
            problems.append(f"approvals.{key} is not a decimal amount")
    disputes = doc.get("disputes") or {}
    if int(disputes.get("sla_days", 0)) <= 0:
        problems.append("disputes.sla_days must be a positive number of days")
    if not disputes.get("reason_codes"):
        problems.append("disputes.reason_codes must list the reason codes")
    if problems:
        raise RuntimeError("config/collections.yaml: " + "; ".join(problems))
    return doc


def match_rules() -> MatchRules:
    return settings()["rules"]  # type: ignore[no-any-return]


@lru_cache(maxsize=1)
def dunning() -> dict[str, Any]:
    doc = _load("dunning.yaml")
    problems: list[str] = []
    policies: dict[str, DunningPolicy] = {}
    for name, steps in (doc.get("policies") or {}).items():
        parsed = []
        seen = set()
        for i, step in enumerate(steps or []):
            where = f"policies.{name}[{i}]"
            kind = step.get("kind")
            if kind not in STEP_KINDS:
                problems.append(f"{where}: kind {kind!r} must be one of {', '.join(STEP_KINDS)}")
                continue
            if step.get("name") in seen or not step.get("name"):
                problems.append(f"{where}: every step needs a unique name")
            seen.add(step.get("name"))
            try:
                days = int(step.get("days"))
            except (TypeError, ValueError):
                problems.append(f"{where}: days must be a whole number")
                continue
            if days < 0:
                problems.append(f"{where}: days must not be negative")
            template = step.get("template")
            if kind == "reminder":
                if not template:
                    problems.append(f"{where}: a reminder needs a template")
                elif not (resources.files("closeloop") / "collections" / "templates" / f"{template}.txt").is_file():
                    problems.append(f"{where}: template {template!r} not found in collections/templates")
            parsed.append(DunningStep(str(step.get("name")), kind, days, template))
        policies[name] = DunningPolicy(name, tuple(parsed))
    for key in ("default_policy", "card_policy"):
        if doc.get(key) not in policies:
            problems.append(f"{key}: {doc.get(key)!r} is not a policy")
    if problems:
        raise RuntimeError("config/dunning.yaml: " + "; ".join(problems))
    doc["parsed"] = policies
    return doc


def policy(name: str) -> DunningPolicy:
    return dunning()["parsed"][name]  # type: ignore[no-any-return]
