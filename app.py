"""Hugging Face Space entry point: the AddressCLIP web demo (``addressclip demo``) as a Space runs it.

ADDRESSCLIP_MODEL: a saved model directory or Hub model id (default ``outputs/demo``, what ``python train.py`` saves).
ADDRESSCLIP_DATASET: optional IAL dataset directory or Hub dataset id, for the city map, the examples and the
similarity view (default: the demo city, if it is already built here).
"""

import os

from addressclip_train.web_demo import MAX_FILE_SIZE, build_demo

demo = build_demo(os.environ.get("ADDRESSCLIP_MODEL", "outputs/demo"), os.environ.get("ADDRESSCLIP_DATASET") or None)

if __name__ == "__main__":
    demo.launch(max_file_size=MAX_FILE_SIZE, ssr_mode=False)  # a Space sets GRADIO_SERVER_NAME=0.0.0.0 itself
