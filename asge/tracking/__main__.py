"""`python -m asge.tracking {init,relocate,import,links}`: see asge.tracking.cli."""
import sys

from asge.tracking.cli import main

sys.exit(main())
