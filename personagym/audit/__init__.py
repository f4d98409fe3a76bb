"""Can these judges be trusted? Five probes of a judge that need no human labels (docs/audit.md).

On a finished run, each judge grades a seeded sample of its answers again, changed in one way at a
time, with the run's own prompt, schema and sampling:

1. identification: which of k personas wrote this answer? (accuracy against chance 1/k)
2. order: the batch reversed (mean absolute score change, against a second draw's)
3. length: a neutral filler paragraph appended (mean score change), and length against score in the run
4. injection: a note to the evaluator appended (mean score change, against a neutral aside's)
5. self-consistency: a second draw (how many scores change; exact and within-one agreement, alpha)

Known failure modes these catch: judges favour positions in a batch and longer answers, follow
instructions planted in what they grade, disagree with themselves, and often cannot tell which
persona wrote an answer (PersonaEval, COLM 2025: the best LLM judges about 69%, people 90.8%).

    result = asyncio.run(audit("luna-v1", db="personagym.db", sample=50))

Layout: `sample` (what is graded), `calls` (every call, planned first), `probes` (the statistics),
`verdicts` (the plain wording), `run` (through the gateway, stored with the run).
"""

from personagym.audit.probes import PROBES
from personagym.audit.run import AUDIT_SCHEMA, AuditOptions, audit, execute_audit, open_run, plan_lines, prepare_audit

__all__ = [
    "AUDIT_SCHEMA",
    "PROBES",
    "AuditOptions",
    "audit",
    "execute_audit",
    "open_run",
    "plan_lines",
    "prepare_audit",
]
