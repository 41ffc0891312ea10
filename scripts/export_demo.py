"""Export a trained demo run into the package (see `llamavid.toy.export`):

    python scripts/export_demo.py runs/demo-smollm2 [--samples-seed 2024] [--note TEXT]
"""

from llamavid.toy.export import main

if __name__ == "__main__":
    main()
