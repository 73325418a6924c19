"""Train AddressCLIP: ``python train.py [RECIPE] [--flags]`` or ``accelerate launch train.py ...``.

A thin entry point; the code is ``addressclip_train.train`` (also the ``addressclip train`` command).
"""

from addressclip_train.train import main

if __name__ == "__main__":
    main()
