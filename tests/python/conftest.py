import pathlib
import sys

# Lets the test modules `import support` wherever pytest is started from.
sys.path.insert(0, str(pathlib.Path(__file__).parent))
