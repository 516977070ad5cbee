"""LightningModules: ClassifierModule (IL model) and OnlineBatchSelection (target model)."""

from rholoss.modules.classifier import ClassifierModule
from rholoss.modules.online_selection import OnlineBatchSelection

__all__ = ["ClassifierModule", "OnlineBatchSelection"]
