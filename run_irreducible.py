"""Irreducible loss model training and IL store: python run_irreducible.py [experiment=...]"""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="configs", config_name="train_irreducible")
def main(cfg: DictConfig) -> None:
    # Imported here so --help and config errors are instant.
    from rholoss.pipelines import train_irreducible
    from rholoss.sweep import run_job

    run_job(train_irreducible, cfg)  # in a multirun, a failing job is recorded and the others go on


if __name__ == "__main__":
    main()
