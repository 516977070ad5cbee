from rholoss.callbacks.progress import StepProgressBar
from rholoss.callbacks.val_curve import ValCurve

__all__ = ["StepProgressBar", "ValCurve"]
