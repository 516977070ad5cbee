"""RHO-LOSS and RHO-1 inside other projects' trainers.

:mod:`rholoss.integrations.transformers`: a ``transformers.Trainer`` (and so TRL's ``SFTTrainer``)
that trains on the selected tokens or sequences of each batch; needs the ``hf`` extra
(``pip install "rholoss[hf]"``). Nothing here is imported by the rest of the package.
"""
