from emu_opcua.simulator.cli import main

raise SystemExit(main())
