"""Selection functions by name: ``get_selection("reducible_loss")``, ``list_selections()``."""

from rholoss.selection import functions as _functions  # noqa: F401  (registers the built-in functions)
from rholoss.selection.registry import (
    Selection,
    SelectionInput,
    SelectionMethod,
    UnknownSelectionError,
    check_percent_train,
    get_selection,
    list_selections,
    register,
    register_score,
    selection_size,
)

__all__ = [
    "Selection",
    "SelectionInput",
    "SelectionMethod",
    "UnknownSelectionError",
    "check_percent_train",
    "get_selection",
    "list_selections",
    "register",
    "register_score",
    "selection_size",
]
