"""Reading runs and turning them into tables: steps to a target accuracy, per method."""

from rholoss.analysis.tables import load_results, method_table, steps_to_accuracy

__all__ = ["load_results", "method_table", "steps_to_accuracy"]
