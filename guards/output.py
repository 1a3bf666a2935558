"""Output guard: the last node before an answer leaves.

- redacts email addresses, phone numbers, card, social-security and bank account (IBAN)
  numbers, and street addresses;
- keeps only statements backed by a fact of this request: every value a sentence states that
  a worker declared a `Ground` for (an order number, a tracking number, an amount, ...) must
  be one a fact backs;
- never lets a sentence make a claim a worker declared (`Claim`: "I refunded...") that this
  request's facts do not prove.
A sentence that fails is removed, and the verdict says which and why.

A drafter's wording (`agents.drafter`: a crew that words the statements of read-only workers;
what was done, offered or advised is said in our words, `Draft.fixed`) is checked as a whole by
the same rules, plus its own (`check_wording`): it states every value the statements state
(nothing the customer must know is left out); it uses no word, number or time word the
statements do not (function words and pleasantries aside: it adds tone, not content) and no
promise word at all; no personal data, no hidden characters. It stands only if every check
passes; otherwise the statements stand, and a verdict of its own says why.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from langchain_core.messages import AIMessage

from graphs.core.answers import Claim, Ground, wordable
from graphs.core.clock import Clock, iso
from graphs.core.state import Draft, Fact, InterlockState, Verdict
from guards.stages import Check, GuardStage, StageResult

__all__ = ["OUTPUT", "check_answer", "check_statement", "check_wording", "make_output_guard",
           "normalized_wording", "redact"]

GUARD = "output"
# Every pattern starts only at a token's edge (a lookbehind), so a long token costs one pass,
# not one pass per character: redaction stays linear in the answer's length.
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)*")
# 13-19 digits with any separators (not inside a longer token such as a tracking number).
_CARD = re.compile(r"(?<![\w-])(?:\d[ ./-]?){12,18}\d(?![\w-])")
_SSN = re.compile(r"(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?\b")
_PHONE = re.compile(
    r"(?<![\w$.,/-])(?:"
    r"\+\d{7,15}"  # +15550102103
    r"|(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?|\d{2,4}[\s.-])\d{3,4}[\s.-]?\d{3,4}"
    r"|\d{3}[\s.-]\d{4}"  # 555-1234
    r"|\d{10,11}"  # 5550102103
    r")(?![\w/-]|[.,]\d)")
_SUFFIX = (r"(?i:street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|way"
           r"|place|pl|terrace|square|sq)")
_ADDRESS = re.compile(
    r"\b\d{1,5}[A-Za-z]?\s+(?:"
    rf"(?:[A-Z][\w'.-]*\s+){{1,3}}{_SUFFIX}"  # 221B Baker Street, 12 Main st
    r"|(?i:(?:[a-z][\w'.-]*\s+){1,3}(?:street|avenue|road|boulevard|lane|drive))"
    r")\b\.?")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


def _iban_valid(candidate: str) -> bool:
    """The IBAN checksum (ISO 13616, mod 97): tells account numbers from other codes."""
    code = candidate.replace(" ", "")
    if not 15 <= len(code) <= 34:
        return False
    digits = "".join(str(int(ch, 36)) for ch in code[4:] + code[:4])
    return int(digits) % 97 == 1


def redact(text: str, *, keep: Iterable[str] = ()) -> tuple[str, list[str]]:
    """`text` with personal data replaced, and the kinds that were found.

    `keep`: strings that are not personal data even if they look like it (the tracking
    numbers of this request's facts).
    """
    kept = {k for k in keep if k}
    found: list[str] = []

    def iban(match: re.Match[str]) -> str:
        value = match.group(0)
        return "[account number redacted]" if _iban_valid(value) else value

    for name, pattern, label in (("email", _EMAIL, "[email redacted]"),
                                 ("iban", _IBAN, iban),
                                 ("card", _CARD, "[card number redacted]"),
                                 ("ssn", _SSN, "[ssn redacted]"),
                                 ("phone", _PHONE, "[phone redacted]"),
                                 ("address", _ADDRESS, "[address redacted]")):
        count = 0

        def replace(match: re.Match[str], label: Any = label) -> str:
            nonlocal count
            if match.group(0) in kept:
                return match.group(0)
            new = label(match) if callable(label) else label
            count += new != match.group(0)
            return str(new)

        text = pattern.sub(replace, text)
        if count:
            found.append(f"{name} x{count}")
    return text, found


def _kept(facts: Sequence[Fact], grounds: Sequence[Ground]) -> set[str]:
    """Values the facts back that look like personal data but are not (tracking numbers)."""
    return {value for g in grounds if g.personal_looking for f in facts
            for value in g.backed(f)}


def check_statement(text: str, facts: Sequence[Fact], grounds: Sequence[Ground] = (),
                    claims: Sequence[Claim] = ()) -> tuple[str, list[str]]:
    """Keep the sentences of `text` that `facts` back; return the kept text and the problems.

    A sentence is withheld when it states a value (per `grounds`) no fact backs, or makes a
    claim (per `claims`) the facts do not prove.
    """
    backed = {g.name: {v for f in facts for v in g.backed(f)} for g in grounds}
    kept: list[str] = []
    problems: list[str] = []
    for sentence in _SENTENCE.split(text):
        if not sentence.strip():
            continue
        issue = None
        for ground in grounds:
            if bad := [v for v in ground.stated(sentence) if v not in backed[ground.name]]:
                issue = f"unbacked_{ground.name}: {bad[0]}"
                break
        else:
            for claim in claims:
                if claim.pattern.search(sentence) and not claim.proven(sentence, facts):
                    issue = claim.problem or f"unproven_{claim.name}"
                    break
        if issue:
            problems.append(issue)
        else:
            kept.append(sentence.strip())
    return " ".join(kept), problems


def check_answer(draft: Draft, facts: Sequence[Fact], grounds: Sequence[Ground] = (),
                 claims: Sequence[Claim] = ()) -> tuple[str, list[str]]:
    """The answer from a draft: grounded statements, then notices; and the problems found."""
    lines: list[str] = []
    problems: list[str] = []
    for statement in draft["statements"]:
        kept, found = check_statement(statement, facts, grounds, claims)
        problems.extend(found)
        if kept:
            lines.append(kept)
    if problems:
        lines.append("(Some statements were withheld because no recorded fact backs them.)")
    lines.extend(draft["notices"])
    return "\n".join(lines), problems


_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_PROMISES = re.compile(
    r"\b(?:refund\w*|reimburs\w*|money\s+back|credit\w*|voucher\w*|coupon\w*|discount\w*"
    r"|compensat\w*|replace\w*|approv\w*|cancel\w*|free|gift\w*|waiv\w*|guarantee\w*"
    r"|promise\w*|back\s+to\s+your|(?:we|i)\s*(?:will|'ll|\u2019ll|shall)|on\s+(?:its|the)\s+"
    r"way\s+back)\b", re.IGNORECASE)
_WHEN = re.compile(
    r"\b(?:today|tonight|tomorrow|yesterday|monday|tuesday|wednesday|thursday|friday|saturday"
    r"|sunday|january|february|march|april|may|june|july|august|september|october|november"
    r"|december|next\s+week|this\s+week|within|by\s+the\s+end|asap|immediately|shortly"
    r"|soon)\b", re.IGNORECASE)


def _said(pattern: re.Pattern[str], text: str) -> Counter[str]:
    return Counter(" ".join(m.group(0).lower().split()) for m in pattern.finditer(text))


_WORD = re.compile(r"[^\W\d_]+")
_PLAIN = frozenset("""
a an the and or but so of on in at to for from with by about as is are was were be been being
has have had it its this that these those there here your yours you we our us i me my hi hello
hey dear thanks thank reaching reach out getting touch contacting happy glad help let know if
anything else just quick update please kind regards best hope sure right now currently also
which what where good news great question asking checked looked up details s ve re
""".split())
"""Words any wording may use: function words and pleasantries. Every other word must be one
the statements use (or its plain inflection): a rewording adds tone, not content."""


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def check_wording(wording: str, statements: Sequence[str], facts: Sequence[Fact],
                  grounds: Sequence[Ground] = (), claims: Sequence[Claim] = ()) -> list[str]:
    """Why a drafter's wording of `statements` may not be the answer (empty: it may).

    It must pass `check_statement` as a whole; state every value the statements state (an
    order number, an amount, a tracking number); carry no personal data and no hidden
    characters; use no word the statements do not (besides function words and pleasantries),
    no number and no time word they do not, and no promise word at all (refund, credit,
    voucher, replacement, "we will", ...: what was done or offered is said in our words).
    `wording` is read as `normalized_wording` gives it.
    """
    problems: list[str] = []
    if hidden := sorted({f"U+{ord(c):04X}" for c in wording
                         if unicodedata.category(c) in ("Cf", "Co", "Cs")
                         or (unicodedata.category(c) == "Cc" and c not in "\n\t")}):
        problems.append(f"hidden_characters: {', '.join(hidden[:3])}")
    text = normalized_wording(wording)
    source = " ".join(statements)
    _, found = check_statement(text, facts, grounds, claims)
    problems.extend(found)
    for ground in grounds:
        said = set(ground.stated(text))
        needed = {v for st in statements for v in ground.stated(st)}
        problems.extend(f"omitted_{ground.name}: {v}" for v in sorted(needed - said))
    known_numbers = set(_NUMBER.findall(source))
    problems.extend(f"unbacked_number: {n}" for n in dict.fromkeys(_NUMBER.findall(text))
                    if n not in known_numbers)
    problems.extend(f"promise: {word!r}" for word in _said(_PROMISES, text))
    allowed = _said(_WHEN, source)
    problems.extend(f"unbacked_time: {word!r}" for word, n in _said(_WHEN, text).items()
                    if n > allowed[word])
    known_words = {_stem(w) for w in _WORD.findall(source.casefold())}
    if new := [w for w in dict.fromkeys(_WORD.findall(text.casefold()))
               if w not in _PLAIN and _stem(w) not in known_words]:
        problems.append(f"unbacked_words: {', '.join(new[:6])}")
    _, pii = redact(text, keep=_kept(facts, grounds))
    problems.extend(f"personal_data: {p}" for p in pii)
    return problems


def normalized_wording(wording: str) -> str:
    """A drafter's text as it is checked and shown: NFKC, without invisible characters."""
    text = unicodedata.normalize("NFKC", wording)
    return "".join(c for c in text if unicodedata.category(c) not in ("Cf", "Co", "Cs")
                   and (unicodedata.category(c) != "Cc" or c in "\n\t")).strip()


def make_output_guard(clock: Clock, grounds: Sequence[Ground] = (),
                      claims: Sequence[Claim] = ()) -> Check:
    """The output guard's check: it turns the responder's draft into the answer message.

    `grounds` and `claims` are what the workers declared (`WorkerSpec.grounds`, `.claims`).
    """
    unique = list({g.name: g for g in grounds}.values())
    claimed = list({c.name: c for c in claims}.values())

    async def output_guard(state: InterlockState) -> StageResult:
        draft = state.get("draft_answer") or Draft(statements=[], notices=[])
        request = state["request"]
        turn = request["turn"]
        results = state.get("results", {})
        fact_ids = [fid for r in results.values() if r["step_id"].startswith(f"t{turn}.")
                    for fid in r["fact_ids"]]
        facts = [state["facts"][fid] for fid in fact_ids if fid in state.get("facts", {})]
        verdicts: list[Verdict] = []
        worded = draft.get("wording")
        used: str | None = None
        fixed = draft.get("fixed", [])
        if worded is not None:
            refused = check_wording(worded["text"], wordable(draft), facts, unique, claimed)
            if refused:
                verdicts.append(Verdict(
                    guard=GUARD, passed=False, action="refuse",
                    reasons=[f"wording_refused: {worded['by']}'s wording was not used; the "
                             f"statements stand", *refused],
                    fact_ids=fact_ids, step_id=None, turn=turn, at=iso(clock.now())))
            else:
                used = worded["by"]
        problems: list[str] = []
        if used is not None and worded is not None:
            # Its words for what the read-only workers found; ours for what was done,
            # offered or advised, checked as the template's are; then our notices.
            kept, problems = check_answer(Draft(statements=fixed, notices=draft["notices"]),
                                          facts, unique, claimed)
            text = "\n".join(t for t in (normalized_wording(worded["text"]), kept) if t)
        else:
            text, problems = check_answer(draft, facts, unique, claimed)
        text, pii = redact(text or "I could not produce an answer backed by recorded facts.",
                           keep=_kept(facts, unique))
        reasons = problems + [f"redacted: {p}" for p in pii]
        notes = [f"worded_by: {used}" if used else "",
                 f"template_used: {draft['wording_error']}" if draft.get("wording_error")
                 else ""]
        verdicts.append(Verdict(
            guard=GUARD, passed=not reasons, action="redact" if reasons else "allow",
            reasons=(reasons or ["grounded: every statement is backed by a fact"])
            + [n for n in notes if n],
            fact_ids=fact_ids, step_id=None, turn=turn, at=iso(clock.now())))
        return StageResult(verdicts=verdicts, update={
            "messages": [AIMessage(content=text, name="interlock")],
            "transcript_len": len(state.get("messages", [])) + 1, "draft_answer": None})

    return output_guard


OUTPUT = GuardStage(name="output", at="answer", final=True, build=lambda deps: (
    make_output_guard(deps.clock, deps.grounds, deps.claims)))
"""The last stage of every answer: redaction, grounding, no unproven claims."""
