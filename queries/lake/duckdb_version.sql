SELECT library_version FROM pragma_version()
