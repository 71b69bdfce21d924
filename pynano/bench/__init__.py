"""``pynano bench``: the same TLS workloads on pynano, the ``ssl`` module,
tlslite-ng and a C program over the same engine, measured in one run.

Modules, in the order a run uses them:

* ``workloads``: what is measured, in which unit, with which cipher suite;
* ``cfloor``: builds benchmarks/cfloor.c, the C floor, into a cache folder;
* ``stacks``: the Python stacks behind one connection interface;
* ``protocol``: the line protocol between the runner and its workers;
* ``worker``: the server and client processes of one Python stack;
* ``processes``: the runner's handle on each worker process;
* ``runner``: starts the workers, calibrates, runs the rounds;
* ``progress``: the progress bar;
* ``report``: statistics, ratios, targets, the table, JSON and the chart;
* ``cli``: the ``pynano bench`` command.
"""
