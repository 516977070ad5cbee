from rholoss.callbacks.val_curve import ValCurve

__all__ = ["ValCurve"]
