"""Every statement pgqueue runs, built once at import, one module per concern.

Bind parameters are named ``b_*`` (``u_*``: one value for a whole batch). Tables carry
no schema here: ``pgqueue._statements`` clones every statement once per schema in use.
Time always comes from the database clock (``now()`` for enqueue,
``statement_timestamp()`` for leases, so a lease taken late in a long caller
transaction still lasts its full timeout). Statements marked :func:`~._common.hot` may
be sent to the driver directly (``pgqueue._direct``).
"""
