"""Irreducible loss model training and IL store: python run_irreducible.py [experiment=...]"""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="configs", config_name="train_irreducible")
def main(cfg: DictConfig) -> None:
    from rholoss.pipelines import train_irreducible  # imported here so --help and config errors are instant

    train_irreducible(cfg)


if __name__ == "__main__":
    main()
