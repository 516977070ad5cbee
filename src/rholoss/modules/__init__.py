"""LightningModules: SupervisedModule (the IL model) and OnlineBatchSelection (the target model)."""

from rholoss.modules.online_selection import OnlineBatchSelection
from rholoss.modules.proxy import EntropyProxy, max_entropy_coreset
from rholoss.modules.supervised import SupervisedModule

__all__ = ["EntropyProxy", "OnlineBatchSelection", "SupervisedModule", "max_entropy_coreset"]
