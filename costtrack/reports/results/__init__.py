"""Before/after results, what each optimization measurably saved, A/B tests with confidence intervals.

A *selection* is a period ([since, until)), a tag (``run=optimized``), or both. For each
selection a few SQL aggregates give the metrics of the course's comparison table
(rates change in percentage points, the rest relatively);
the attribution reads what the records say each optimization saved, per endpoint: response-cache
hits (`cost_saved_usd`), provider prompt caching (cached tokens at the cached rate
instead of the input rate, less what cache writes cost above the input rate), cheap-first
fallback (savings of accepted answers minus the cost of rejected attempts) and routing
(the `route` tag: routed calls against the same tokens on the model the endpoint used before). The document credits each
optimization with the change between the sides (`credit`): per endpoint, what it saves
per request after minus before, x the after side's requests; one that did not change
is not credited.

A/B tests (tags `ab_test`, `ab_arm`): per arm the mean cost per call, latency and
quality score with 95% confidence intervals, and the difference to the control arm
with Welch's t-test (Student's t from the regularized incomplete beta function;
no scipy).
"""

from .ab_test import AbResult, ArmStats, ab_arms, ab_test
from .attribution import Attribution, attribution
from .attribution import Credit as Credit
from .attribution import Saving as Saving
from .attribution import credit as credit
from .document import Results, build_results
from .document import Row as Row
from .document import steps as steps
from .metrics import Metrics, measure
from .metrics import Progress as Progress
from .metrics import metric_queries as metric_queries
from .selection import NoRecords, Selection
from .statistics import Comparison, student_t_cdf, student_t_ppf, welch
from .statistics import Sample as Sample
from .summary import Summary, build_summary
from .thresholds import MIN_REQUESTS

# The `X as X` imports above re-export public names kept out of __all__ (the CLI and the tests import some of them).
__all__ = [
    "MIN_REQUESTS",
    "AbResult",
    "ArmStats",
    "Attribution",
    "Comparison",
    "Metrics",
    "NoRecords",
    "Results",
    "Selection",
    "Summary",
    "ab_arms",
    "ab_test",
    "attribution",
    "build_results",
    "build_summary",
    "measure",
    "student_t_cdf",
    "student_t_ppf",
    "welch",
]
