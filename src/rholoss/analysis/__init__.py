"""Reading runs and sweeps and turning them into the paper's tables and figures: steps (and
seconds) to target values of the runs' metric (accuracy, MSE, loss) per method, the speedup over uniform, the share of noisy points
selected. Also a command line: ``rholoss-analysis <run or sweep folder>`` (or ``python -m rholoss.analysis``)."""

from rholoss.analysis.logs import read_logged
from rholoss.analysis.metric import Metric, metric_of
from rholoss.analysis.report import analyze, log_to_wandb
from rholoss.analysis.summary import mean_curve, speedup_markdown, summarize, targets_markdown
from rholoss.analysis.tables import load_results, markdown_table, method_table, steps_to_value

__all__ = [
    "Metric",
    "analyze",
    "load_results",
    "log_to_wandb",
    "markdown_table",
    "mean_curve",
    "method_table",
    "metric_of",
    "read_logged",
    "speedup_markdown",
    "steps_to_value",
    "summarize",
    "targets_markdown",
]
