print("keyway")
