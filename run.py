"""Target training with online batch selection: python run.py [experiment=...] [selection=...]"""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> None:
    from rholoss.pipelines import train  # imported here so --help and config errors are instant

    train(cfg)


if __name__ == "__main__":
    main()
