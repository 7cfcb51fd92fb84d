from wiseft_lib.studies import main

raise SystemExit(main())
