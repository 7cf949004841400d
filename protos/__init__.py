"""The wire contract: protobuf messages (``arrowroot_pb2``), Flight SQL's (``flight_sql``) and the
constants a client of any language needs besides them."""

#: the app_metadata of a DoPut's last message (after its last batch): "I sent everything, keep it".
#: The workspace API stores an upload only when the stream carried it, then ended normally, and the
#: call was not cancelled — an interrupted client leaves nothing behind.
PUT_COMMIT = b"arrowroot.commit"
