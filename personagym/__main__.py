from personagym.cli import main

main()
