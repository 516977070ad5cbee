"""LightningModules: SupervisedModule (the IL model) and OnlineBatchSelection (the target model)."""

from rholoss.modules.online_selection import OnlineBatchSelection
from rholoss.modules.supervised import SupervisedModule  # first: the selection methods build on it

__all__ = ["OnlineBatchSelection", "SupervisedModule"]
