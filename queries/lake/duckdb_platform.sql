SELECT platform FROM pragma_platform()
