"""setuptools entry: the CFFI extension is declared in build_ext.py."""

from setuptools import setup

setup(cffi_modules=["build_ext.py:ffibuilder"])
