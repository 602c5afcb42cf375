"""``python -m chainrule`` runs the command line."""

import sys

if __name__ == "__main__":
    try:
        from .cli import main
    except KeyboardInterrupt:        # Ctrl-C while the command line is still loading: quiet, as main is
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(main())
