# The lines every CMakeLists.txt starts with, around a block of the docs.
cmake_minimum_required(VERSION 3.22)
project(docs_example LANGUAGES CXX)
@DOC@
