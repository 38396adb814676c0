"""Run the IRN/AdvCAM pipeline passes (see ``python run_sample.py --help``)."""
from advcam.run_sample import cli

if __name__ == "__main__":
    cli()
