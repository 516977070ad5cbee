"""Selection functions by name (``get_selection("reducible_loss")``, ``list_selections()``), and the
selection step for your own training loop (``select_batch``, ``selected_loss``)."""

from rholoss.selection import functions as _functions  # noqa: F401  (registers the built-in functions)
from rholoss.selection.registry import (
    Selection,
    SelectionInput,
    SelectionRule,
    TokenSelectionInput,
    UnknownSelectionError,
    check_applies,
    check_percent_train,
    get_selection,
    list_selections,
    register,
    register_score,
    register_token_score,
    rule_of,
    selection_size,
)
from rholoss.selection.step import select_batch, selected_loss, selection_statistics

__all__ = [
    "Selection",
    "SelectionInput",
    "SelectionRule",
    "TokenSelectionInput",
    "UnknownSelectionError",
    "check_applies",
    "check_percent_train",
    "get_selection",
    "list_selections",
    "register",
    "register_score",
    "register_token_score",
    "rule_of",
    "select_batch",
    "selected_loss",
    "selection_size",
    "selection_statistics",
]
