"""AdvCAM seeds for a list of images (see ``python obtain_CAM_masking.py --help``)."""
from advcam.obtain_cam_masking import cli

if __name__ == "__main__":
    cli()
