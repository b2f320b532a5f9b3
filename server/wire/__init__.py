"""What crosses the wire: JSON encoding, payload schemas, reply types, views of storage rows, cursors, refusals."""
