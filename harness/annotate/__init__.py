"""`harness annotate`: a local web page where people label a plan's outputs, one item at a time.

`Labelling` (session) holds what each annotator has left and writes their answers to the store as
ratings at once; `make_server` (server) binds the page, standard library only; `page` renders it.
"""

from harness.annotate.server import AnnotateServer, make_server
from harness.annotate.session import Labelling

__all__ = ["AnnotateServer", "Labelling", "make_server"]
