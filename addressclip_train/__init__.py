"""addressclip_train: training, the command line and the demo wiring for AddressCLIP.

The package layers (imports point down only)::

    addressclip_train     train (HfArgumentParser + Trainer), trainer, checkpoints, reporting, cli, similarity_map
          |
    dataset_scripts       builders: OSM partition, demo city, Pitts-IAL / SF-IAL, captions
          |
    modeling_addressclip  the Hub model library: config, model, losses, address, image policy, pipeline, metric

``modeling_addressclip`` is what a saved model directory and ``trust_remote_code`` need; it imports
neither of the packages above it (in the spirit of open_clip / open_clip_train).
"""
