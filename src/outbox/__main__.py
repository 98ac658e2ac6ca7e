from outbox.main import main

main()
