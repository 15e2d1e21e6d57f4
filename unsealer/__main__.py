from unsealer.cli import main

main()
