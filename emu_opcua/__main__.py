from emu_opcua.cli import main

raise SystemExit(main())
