"""LightningModules: ClassifierModule (IL model) and OnlineBatchSelection (target model)."""

from rholoss.modules.classifier import ClassifierModule
from rholoss.modules.online_selection import OnlineBatchSelection
from rholoss.modules.proxy import EntropyProxy, max_entropy_coreset

__all__ = ["ClassifierModule", "EntropyProxy", "OnlineBatchSelection", "max_entropy_coreset"]
